// Package spool is the agent's durability boundary: a crash-safe, segmented,
// append-only queue of opaque entries (KPL aggregates, a few bytes to
// max_entry_bytes each) that always opens.
//
// Appenders call Append; senders call Next (or ReadNext, TryNext) and Ack
// each entry once the destination has it. Acks may come in any order; a
// segment file is deleted once every entry in it is acknowledged. Every entry
// is handed out once per Open, in ID order; after a restart the entries not
// acknowledged come again. Delivery is at-least-once: a crash may deliver
// again entries acknowledged in the last sync_interval, and never loses one
// that Append accepted within the guarantees below.
//
// # Loss window of each sync policy
//
//   - always: Append returns after the entry is fsynced (fdatasync). Appenders
//     that arrive while one fsync runs share the next one (group commit). No
//     loss on kill -9 or power loss for any entry whose Append returned
//     (on disks that honour flushes).
//   - interval (default, sync_interval 1s): Append stages the frame and
//     returns; the writer goroutine writes staged frames in runs of up to
//     1 MiB (write-behind, writebehind.go). A background fsync runs every
//     sync_interval, and as soon as a segment is sealed (by the syncer: the
//     append that rolled it does not wait for the disk). kill -9 loses only
//     what was staged and not yet written (the kernel has the rest). A power
//     loss or kernel crash loses at most the entries appended in the last
//     sync_interval, and Durable() says which IDs are safe: source
//     checkpoints wait for it (WaitDurable).
//   - never: write-behind as for interval; the OS writes back when it likes
//     (typically within 30 s on Linux); the spool fsyncs only when it closes
//     a segment (in the background), on Sync and on Close. kill -9 loses
//     only what was staged; a power loss can lose whatever was not yet
//     written back, and Durable() is simply the last written ID.
//
// TestPowerCut checks these promises at thousands of random power cuts on a
// simulated disk that keeps only what was fsynced (internal/crashfs); set
// AGENT_POWERCUT_ITER (or run make test-powercut) for more.
//
// For every policy acknowledgements are written every sync_interval and on
// Close: a crash delivers again what was acknowledged since the last write.
// After a power loss, whatever tail of a segment did not reach the disk is
// cut at the next Open (torn tail), counted and logged.
//
// # When full
//
// The spool is full when its files would exceed max_bytes, when the file
// system's free space would fall below min_free_bytes (auto: the smaller of
// 256 MiB and 5% of the file system's size), after a write got ENOSPC (until
// the next free-space check, at most a second later), or while the directory
// refuses writes (EACCES, EPERM, EROFS: made read-only while the spool runs;
// tried again with backoff from 100 ms to 2 s, one ERROR per 30 s, counted in
// Stats.WriteErrors). Ack-file writes and deletions of finished segments
// that fail the same way are retried at the next maintenance round; nothing
// accepted is dropped because of them. A blocked append looks again at least
// every second whatever blocks it.
// when_full then decides: block (Append waits for acks to free a segment,
// until its context is done: sources pause), drop_newest (Append returns an
// error wrapping ErrFull; counted) or drop_oldest (the oldest segment is
// deleted with its unacknowledged entries, as many as make room: a deleted
// segment's bytes count as free at once; counted; not while the directory
// refuses writes, as that would free nothing). With the write-behind, entries
// staged count against max_bytes too: drop_oldest waits for the writer to
// write them rather than refuse the newest entry, and while the writer
// retries a failed write with a full stage, new entries meet when_full
// (drop_newest refuses them at once; drop_oldest drops one segment per
// attempt of the writer). Nor does deciding to refuse or drop wait for the
// writer's write(2) in progress (only a roll that frees the active segment
// whole needs it), and neither deciding nor deleting waits for
// acknowledgements being fsynced or for a reader in the middle of a read (a
// slow disk, a large batch): the segment being read, or whose ack file is
// being written, is dropped under them. The reader returns the entry it was
// reading and goes on with the next segment; acknowledging an entry that
// was dropped is not an error; an ack file written for a dropped segment is
// removed by its writer. Entries dropped count in Stats.DroppedOldest
// (those handed out and perhaps delivered too: a drop cannot know) and in
// the ERROR drop lines with when_full_reason. They are not dead-lettered:
// the spool holds opaque batches, and drop_oldest is the choice for inputs
// that cannot wait, where losing the oldest is the price stated.
// A full episode is logged once at its start (WARN) and once at its end
// (INFO "room again"); the maintainer looks for its end every round, so it
// is logged even when no append comes, and after ENOSPC believes room only
// on evidence: a deletion, a write that succeeded, or statfs (full.go).
// With drop_newest and drop_oldest the drops are logged at most once per
// 10 s (ERROR, with the counts since the last line), and the end of the
// drop episode once (INFO "room again, drops stopped", with the entries
// dropped in it) when none was dropped for 10 s and there is room. While
// the directory refuses writes and no append is there to try again, the
// maintainer probes it at the backoff's pace (creating and removing an
// empty write-probe.tmp), so the end of the refusal is logged without an
// append too.
// Space comes back a segment at a time, so max_bytes must be at least two
// segments (segment_bytes is at least MinSegmentBytes, 4 KiB, so the smallest
// spool is 8 KiB; the agent derives segment_bytes for a small max_bytes left
// without one); acknowledged
// entries in the active segment are freed by closing it early. Open lowers
// max_entry_bytes to what fits under max_bytes (max_bytes less 88 bytes), so
// that an accepted entry always finds room once everything is acknowledged.
//
// # Recovery
//
// Open never fails because of what the files contain. A segment closed
// cleanly ends with a seal and is trusted without a scan (each is fsynced
// first: a sealed segment is fsynced by the syncer, after the next one was
// created and off the appenders' path, so the process may have stopped
// between its seal and its fsync); the segment that was active when the
// process stopped is scanned frame by frame, sealed and fsynced. A torn tail
// is cut at the last good frame. After a power loss a segment sealed but not
// yet fsynced may have lost its end too (entries that were not durable yet):
// it is cut like a corrupt end, logged and counted. A corrupt frame in the middle is skipped (found by a scan or by the
// reader) and the next valid frame is found by its salted CRC and its ID. A segment with an unreadable header is renamed
// *.corrupt (the newest 16 such files are kept for inspection). Each case is
// logged once with what was lost and counted in Stats. Only bytes that are
// not a valid frame count as lost: an I/O error while reading is returned to
// the reader (or fails Open) and loses nothing. Other files in the directory
// are left alone.
//
// A torn or corrupt end that the file system will not truncate (EPERM, EIO)
// is cut as a broken segment is repaired while the spool runs: a clean copy
// of the header and every whole frame, sealed, is written beside it
// (*.seg.tmp), fsynced and renamed over it (the WARN "cut a torn tail" then
// says how=replaced). If that fails too, the bytes stay (how=left, with a
// WARN giving both errors): reads stop at the last whole entry, the file is
// never appended to, and the next Open tries again (the file may no longer
// be the last segment then: an end that is one entry cut short, whose ID
// the next segment starts with, is still a torn tail, not a loss). When the directory
// refuses writes (EACCES, EPERM, EROFS: chmod a-w, an LSM) so that no new
// segment can be started, Open still succeeds, with a WARN "the directory
// refuses writes: opened to deliver the entries on disk": entries on disk
// are read and acknowledged, and appends meet when_full as for a directory
// made read-only while the spool runs (see When full) until it accepts
// writes again. The agent thus starts and drains its backlog rather than
// exiting over a spool it cannot add to.
//
// Open fails only for I/O errors (permissions on the files or the lock, a
// read-only file system, a read error) and with ErrLocked when another
// process has the directory open; the error names that process.
//
// A write that fails after part of a frame is cut off again; if the
// truncate fails too, the segment is left behind (the next frame starts a
// new one, and the next Open cuts the torn tail), or, when it holds no
// entry yet and a new segment would have its name, a clean file with the
// same header is written beside it (*.seg.tmp), fsynced and renamed over
// it, so a file naming the next ID exists at every point of a crash.
//
// After an fsync error the kernel may have dropped the pages it could not
// write, so the spool stops accepting appends (they return the error) until
// it is reopened; reading and acknowledging go on. A failed fsync of the
// directory after such a replacement counts as one.
//
// # Files
//
// Files are created 0600 and the directory 0700:
//
//	LOCK                    flock(2)ed while open; holds the holder's PID
//	<first ID, %016x>.seg   segment: entries with IDs first, first+1, ...
//	<first ID, %016x>.ack   acknowledgements of that segment's entries
//	*.corrupt               unreadable segments moved aside at Open
//	<first ID>.seg.tmp      a clean copy of an empty segment being replaced; removed at Open
//
// # Byte layout (integers little-endian; CRC32C is Castagnoli)
//
// Segment header, 32 bytes:
//
//	0      4    5          8                16      20             28       32
//	+------+----+----------+----------------+-------+--------------+--------+
//	| KSPL | v1 | 0 0 0    | first ID (u64) | salt  | 0 (reserved) | CRC32C |
//	+------+----+----------+----------------+-------+--------------+--------+
//	 magic  version                          u32     8 bytes        of 0..28
//
// Frame, one per entry, 16 bytes plus the payload:
//
//	0              4              8                16
//	+--------------+--------------+----------------+--------------------+
//	| CRC32C (u32) | length (u32) | ID (u64)       | payload (length)   |
//	+--------------+--------------+----------------+--------------------+
//	CRC32C covers bytes 4.. to the end of the payload, seeded with the
//	segment's salt, so a payload that contains bytes shaped like a frame
//	can never pass for one when the reader resynchronises after corruption.
//	IDs in a segment are consecutive, starting at the header's first ID.
//
// Seal, the last frame of a closed segment: a frame with ID 0 and a 24-byte
// payload. Open trusts a segment that ends with a valid seal without reading
// it; a segment without one is scanned.
//
//	16               24               32                 40
//	+----------------+----------------+------------------+
//	| first ID (u64) | last ID (u64)  | seal offset (u64)|   (last = first-1: empty)
//	+----------------+----------------+------------------+
//
// Ack file: a 16-byte header, then 16-byte records, each a range of IDs of
// that segment that are done (acknowledged, or found lost). Records are
// appended every sync_interval; a file that grows far beyond what its
// ranges need is rewritten (temporary file, fsync, rename).
//
//	header:  0      4    5       8                16
//	         | KSPA | v1 | 0 0 0 | first ID (u64) |
//	record:  0              4                8                16
//	         | CRC32C of 4..16 | count (u32) | first ID (u64) |    IDs [first, first+count)
//
// # Memory
//
// Memory does not grow with the backlog: per segment the spool keeps a few
// words and, once entries of it are acknowledged, a bitmap of one bit per
// entry (160 bytes for a 64 MiB segment of 50 KiB entries). Reads go through
// one 256 KiB window, or (NextBatch) straight into the caller's buffer, a
// run of frames per read; entries not yet synced are read back from the
// file (the page cache), never queued in memory.
package spool
