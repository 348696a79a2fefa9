// Package file is the agent's file source: it follows log files the way
// logrotate, applications and container runtimes treat them, and emits one
// record per line (or per multiline record) without skipping or inventing a
// line.
//
// # Model
//
// One goroutine (Run's) does all discovery, reading and emitting, so records
// of a file are emitted in file order and emit is never called concurrently.
// A second goroutine receives fsnotify events and only records them as hints
// (which paths changed); a third writes checkpoints every second. Commit,
// Stats and Files may be called from any goroutine.
//
// The loop sleeps until an event, a deadline (scan, poll, partial-line or
// multiline timeout, rotate wait, close_inactive) or the end: an idle source
// costs one fstat per open file per poll_interval and a pattern scan per
// scan_interval, nothing else.
//
// # Discovery
//
// Include patterns are globs; a "**" element matches any number of
// directories (it does not follow symlinked directories, so link cycles are
// harmless). Every directory that can hold a match is watched with fsnotify,
// and for a pattern whose directory does not exist yet, its nearest existing
// ancestor is, so new files and directories are found at once. A periodic
// scan (scan_interval) is the fallback where events never come (NFS, some
// overlay setups, a watch limit reached). A compressed file (.gz, .bz2,
// .xz, .zst, ... as compressedExts) that a wildcard matches is left out
// (app.log* and app.log.1.gz): its bytes are not lines, and its content is a
// rotation's, read decompressed where it holds lines not read (see
// Rotation). A name written out, or a last element ending with the suffix
// (*.gz), keeps it.
//
// # Identity
//
// A file is its device and inode. Because a deleted file's inode can be
// reused, identity is confirmed when a file is (re)opened: by its birth time
// where the file system keeps one (statx; ext4, xfs, btrfs, tmpfs), and by a
// fingerprint, a hash of its first fingerprint_bytes (fewer while the file is
// shorter; the fingerprint grows with the file). A mismatch means a new file,
// read from its start. Files with identical first bytes are still different
// files: the fingerprint only confirms an inode, it never identifies a file
// on its own. Without birth times, an inode reused by a file whose first
// bytes equal what the old file had is indistinguishable from the old file;
// that is the limit of every fingerprinting scheme.
//
// A FileID ("dev:ino:tag") names one incarnation of a file's content. It
// stays with the file across renames and restarts (it is kept in the
// checkpoint). A truncation starts a new incarnation with a new ID, so
// offsets restart at 0 without a late commit of the old content moving the
// new content's checkpoint.
//
// # Rotation
//
//   - Rename and create: the renamed file stays open and is read to its end,
//     including what its writer appends before reopening, and is released
//     rotate_wait after it last grew. If its new name matches the patterns it
//     is simply followed there, at its position.
//   - Rename while stopped (logrotate during a restart): at start, a
//     checkpointed file that no matching path leads to, and whose
//     checkpoint is not at its end, is looked for by its inode in the
//     directory of its last path; found under another name (app.log.1) with
//     its identity intact, it is read from its checkpoint to its end and let
//     go, as above. The rotated_dirs are searched too (logrotate's olddir).
//     A rotated_dirs path that exists and is not a directory is a config
//     error, one that does not exist (yet) a warning
//     (Config.RotatedDirProblems: validate, run, reload and agent tail).
//   - Compressed while stopped (compress without delaycompress): not found
//     by its inode (app.log.1 was compressed into app.log.1.gz and
//     removed), a checkpointed file is looked for among the compressed
//     rotations named after it (.gz, .bz2, .xz, .zst, .lz4) in its
//     directory and the rotated_dirs: the first whose decompressed bytes
//     begin with its fingerprint and reach its checkpoint is decompressed
//     as a stream, at start, before the loop (its lines come before the new
//     file's), from the checkpoint to its end, under the file's FileID. A
//     copytruncate copy compressed already is read the same way, under a
//     FileID of its own. While logrotate compresses, the plain rotation is
//     still there (it is removed after): found by its inode, it is read as
//     plain bytes. A decode error stops the read: what came before it is
//     sent, the error counted (Stats.CompressedErrors) and logged.
//     Checkpoint entries of files that can grow no more (compressed, or
//     rotated away and let go) record where they ended (End), so nothing is
//     looked for or decompressed again at the next start.
//   - Rotated twice or more while stopped: after the rotation holding the
//     checkpointed content is found (renamed, copied or compressed), the
//     rotations named as newer (app.log.1 is newer than app.log.2,
//     app.log-20261207 than app.log-20261206) hold versions of the file the
//     source never saw: read whole, oldest first, unless their first bytes
//     are those of the checkpointed content, of the file now, of a file
//     with a checkpoint (read before) or of another such rotation (the
//     plain and compressed forms of one).
//   - copytruncate: a size below the read offset (or first bytes that
//     changed) means the file was truncated: reading restarts at 0, and
//     Stats.Truncations counts it. The first bytes are compared with the
//     fingerprint whenever a file that was read to its end grows again
//     (before the new bytes are used) and at each poll where its size
//     changed, so a file truncated and rewritten past the read offset while
//     the source was blocked (backpressure) is caught too, unless its new
//     first bytes equal the old ones.
//     What the source had not read yet when the file was truncated (it
//     lagged, waited for its next poll, or was stopped: then the checkpoint
//     is past the file's new size, or its first bytes changed) is in the
//     copy: the source looks for it in the file's directory, once per
//     truncation (at start, for the files found truncated below their
//     checkpoint). A copy is a regular file named as logrotate names one
//     (the file's name, or that name without its extension, then '.', '-'
//     or '_': app.log.1, app.log-20261206, app-20261206.log; in a rotated
//     dir, the file's name too), not compressed
//     (.gz, .bz2, .xz, .zst, ... are skipped: their bytes are not the
//     file's), longer than the offset, not followed already, and its first
//     bytes match the truncated file's fingerprint; of several, the last
//     modified. It is read from the offset to its end (an incomplete last
//     line whole, from the copy) and let go as a rotated file; the
//     truncated file is read from 0. A copy the patterns match too
//     (app.log*), found by the first scan, starts at the checkpoint instead
//     of its start. The fingerprint is all that ties a copy to the file:
//     where the file was shorter than fingerprint_bytes, it covers every
//     byte up to the checkpoint, so the copy holds exactly what was read;
//     where every incarnation of a file begins with the same
//     fingerprint_bytes (a long fixed header), an older copy may be taken for
//     the new one, and its lines after the offset are sent again (never
//     lost). A copy in the rotated_dirs (olddir) is found there; a copy
//     compressed already (compress without delaycompress removes the plain
//     copy once the compressed one is complete) is read as above, at start
//     and while running alike: at once, from the offset, under a FileID of
//     its own, before the truncated file's new content; without any copy,
//     those lines are lost, and the log says so at start.
//     Without a copy, what was read of the last line is emitted as it is.
//     Lines written between logrotate's copy and its truncate are in neither
//     file: every agent loses them. Prefer rename rotation.
//     An application that does not open its log with O_APPEND keeps writing
//     at its old offset after a truncation, which leaves a hole of NUL bytes
//     that the source reads as data.
//   - Delete while open: as a rename, the file is drained and then closed.
//   - Symlinks: a matching symlink is followed to its target; a path that
//     becomes a symlink to the same file keeps its position, a symlink
//     pointed at another file makes the old target drain and the new one be
//     read from its start.
//   - A file that disappears and comes back (same inode) keeps its position;
//     a new file under an old name is new.
//
// The loop may be stuck in emit for a long time (backpressure). Meanwhile the
// event goroutine opens every new matching file the moment it is created
// and holds it for the loop to adopt (while descriptors last: they count
// against max_open_files like the loop's), so a file created and rotated
// away during the stall is still read.
// Without events (NFS) that protection is gone: follow the rotated names too
// (app.log*) if the destination may stall for longer than a rotation period.
//
// # Descriptors
//
// max_open_files (default 1024) bounds the descriptors a source holds,
// files the event goroutine holds for the loop included. The file sources
// of a process also share one budget: the soft RLIMIT_NOFILE minus a reserve
// of max(128, a quarter of the limit) (but at least half the limit is left
// to the sources), which they never touch: the outputs' connections, the
// spool's segments, checkpoint writes and the admin server need it. Go
// raises the soft limit to the hard limit when the process starts, so
// under `ulimit -n 1024` (hard 1024) a source holds at most 768 files,
// whatever max_open_files says; New logs when it lowers the bound, and
// Stats.MaxOpenFiles (agent_file_open_descriptors_limit) shows it. A source waiting for
// the shared budget makes the other sources give up the descriptors of
// files that have nothing to read.
//
// Every file found is opened (so a rotation cannot take lines from under
// it) while descriptors last; the others wait in a queue, most recently
// modified first. While files wait, an open file yields its descriptor as
// soon as it has caught up with its writer (in the same turn of the loop,
// not at the next poll), or after 8 MiB or 250 ms of reading, and goes to
// the back of the queue if it has more: every file gets turns. A rotated file keeps its
// descriptor until drained (nothing else can reach its data). A file that is
// renamed to a name outside the patterns while it waits for a descriptor
// cannot be followed: size max_open_files for the files that are written.
//
// # Failures
//
// No file is given up on after an error that may pass. A file that cannot
// be opened (EACCES, EPERM, EIO, ...) is tried again at every scan, and at
// once on a chmod event (a chmod changes neither size nor mtime, so waiting
// for growth would wait forever). An open refused for lack of descriptors
// (EMFILE, ENFILE) is not the file's fault: it keeps its place at the head
// of the queue, and no other file is tried until the source frees a
// descriptor or the next scan. A read or fstat error closes a followed file,
// which is opened again (at its position) at the next scan; so does a file
// whose first bytes cannot be read to confirm its identity. A rotated file
// keeps its descriptor, its only way to its data, and is tried at each poll.
// With start_at: end, a file that cannot be read when found starts after its
// last complete line as of then, found when it is first opened.
// A directory that cannot be listed, a path that cannot be examined, a
// directory that cannot be watched and the watcher itself (inotify_init:
// EMFILE, the per-user instance limit) are tried again at every scan. Each kind
// of failure is counted (Stats: OpenErrors, NoDescriptor, ReadErrors,
// ScanErrors, WatchErrors, FilesUnreadable) and logged at most once a
// minute, with the number of failures and the last path, not once per file.
// With --once (Settings.Once) a file that cannot be opened is reported and
// skipped instead.
//
// # Records
//
// One record per line, "\n" and "\r\n" removed, bytes passed through (invalid
// UTF-8 is data). A last line without a newline is held until its newline
// comes, or the file has not grown for flush_partial_after, or the file is
// rotated away and released, or (--once) the end is reached; it is then
// emitted as it is (a trailing "\r" included: it may be data). What the file
// later adds to that line is the next record, but the newline that only
// ends it ("\n", "\r\n", or the "\n" after a flushed "\r") makes no record,
// also after a restart from its checkpoint: no empty record is invented.
// Lines longer than max_record_bytes are truncated
// (max_record_bytes-len(truncate_marker) bytes plus truncate_marker, the rest
// skipped; the default marker "\n" can never end an untruncated line) or split
// into consecutive records. A truncation is counted and logged at WARN (the
// file, the limit, the line's size) at most once a minute per source.
// Empty lines are empty records.
//
// A record's Cursor is {FileID, Start, Offset}: the byte range it came from,
// terminator included. Data is only valid during emit: the source reuses its
// buffers and emits without allocating. Run through RunBatch (the agent
// does), the records that one read completes go downstream in batches of at
// most 1024 (source.EmitBatch: the flow's locks are taken once per batch,
// not once per line); multiline records and truncated lines (whose kept
// prefix may be the splitter's own buffer) go one by one, in order.
//
// # Checkpoints and start position
//
// The checkpoint of a file is the offset handed to Commit by the agent once
// every record up to it is durable downstream; the read offset is never
// stored. On start, a file with a checkpoint resumes at its committed offset
// (records after it are emitted again: at-least-once). A file without one
// starts at start_at ("end" starts after its last complete line), except
// that files that appear while the source runs, and files born (by birth
// time) after the previous run last scanned, are read from their start: they
// were not there when the source last looked. ignore_older files count as
// read up to their size. Checkpoints are written every second and when Run
// returns; entries of files gone for longer than checkpoint_ttl are dropped.
package file
