// Package journald is the source that follows the systemd journal
// (`type: journald`). It runs `journalctl --follow --output=export` as a
// child process (no cgo, no libsystemd) and emits one record per journal
// entry: a JSON object of the entry's fields.
//
// # Records
//
// Every field of the entry is kept, user fields (MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER, CODE_FILE, ...) and the trusted fields journald adds
// (_PID, _UID, _COMM, _EXE, _CMDLINE, _SYSTEMD_UNIT, _HOSTNAME, _BOOT_ID,
// _TRANSPORT, ...), in the order journalctl gives them, except those listed
// in exclude_fields and the positions __MONOTONIC_TIMESTAMP, __SEQNUM and
// __SEQNUM_ID. __CURSOR is kept: the source delivers at least once, and the
// cursor identifies an entry delivered twice. __REALTIME_TIMESTAMP becomes
// an RFC 3339 time in UTC with microseconds. A value that is valid UTF-8 is
// a JSON string (newlines included); any other value is {"base64": "..."}.
// A field that appears more than once in an entry has an array of its
// values. An entry larger than max_record_bytes has its longest values cut
// and "_AGENT_TRUNCATED": true added (agent_journald_truncated_records_total;
// logged at WARN at most once a minute).
//
// # Position and checkpoints
//
// The journal's position is its cursor. The source numbers the records it
// emits (Cursor{FileID: "journal", Start: n-1, Offset: n}) and keeps the
// cursors of those not yet durable; when the agent commits number n, the
// cursor of record n becomes the checkpoint (checkpoint.Entry.Cursor),
// written every checkpoint interval. So the source is a source.Committer:
// the agent may take the direct path, and after a crash the source starts
// journalctl with --after-cursor at the last durable entry and reads again
// what was not: nothing is lost, some entries may come twice.
//
// Without a checkpoint, start_at decides: "end" (the default) reads only
// entries written from then on (--lines=0), "beginning" the whole journal,
// or from `since` (journalctl --since).
//
// # journalctl
//
// journalctl_path names the program (looked up in PATH). If it cannot be
// found or started, or the first journalctl fails before its first entry
// (an unreadable journal, a bad filter or since), Run returns an error that
// says so, with what journalctl wrote to stderr, and the agent stops with
// it. A journalctl that ends later (killed, crashed, or its output broken:
// agent_journald_parse_errors_total) is started again after the last
// emitted entry, with a delay doubling from 200ms to 30s
// (agent_journald_child_restarts_total). What journalctl writes to stderr is
// logged as warnings, at most five lines per ten seconds.
//
// Filters are journalctl's: units (--unit), identifiers (--identifier),
// priority (--priority) and matches (FIELD=VALUE, "+" for OR), combined as
// journalctl combines them; directory reads another journal directory.
package journald
