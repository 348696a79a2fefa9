// Package checkpoint persists how far each file source has delivered: per
// source and per file identity, the offset after the last line that is
// durable downstream (in the spool or acknowledged by the destination).
//
// The store is one JSON file under the agent's state directory. It must not
// live on a tmpfs such as /run or /tmp: checkpoints that vanish at reboot make
// every file start over (or, with start_at: end, skip what was written while
// the host was down). Open warns when it finds itself on tmpfs.
//
// Layout (version 1):
//
//	{
//	  "version": 1,
//	  "saved_at": "2025-01-02T03:04:05.000000006Z",
//	  "sources": {
//	    "<source name>": {
//	      "scanned_at": "...",           // the source's last complete look at its files
//	      "files": {
//	        "<file id>": {
//	          "offset": 123,              // durable downstream; resume here
//	          "path": "/var/log/app.log", // informational
//	          "last_seen": "...",         // for TTL pruning
//	          "dev": 2049, "ino": 1234,   // identity
//	          "birth": 1735787045000000000,               // birth time (ns), 0 if the file system has none
//	          "fingerprint": "9f86d081884c7d65", "fingerprint_len": 1024,
//	          "end": 4096                 // optional: where a file that can grow no more
//	                                      // ended (rotated away and read to its end, or a
//	                                      // compressed rotation); offset >= end: nothing left
//	        }
//	      }
//	    }
//	  }
//	}
//
// Writes are atomic: a temporary file in the same directory is written and
// fsynced, renamed over the old file, and the directory is fsynced, so a
// crash or a power cut leaves the old or the new state, never a torn one
// (TestPowerCut_CheckpointsAreOldOrNewNeverTorn checks it on a simulated
// disk); temporary files a crash leaves behind are removed at Open. A write
// that fails (a full disk, a directory made read-only while the agent runs)
// keeps the old file; the state stays in memory, the failure is counted
// (Stats.WriteErrors) and the next Flush, at the next checkpoint interval,
// tries again. A lock file
// (path + ".lock", flock) keeps a second agent from sharing the state.
//
// A missing file is a first start. A file that cannot be parsed is moved
// aside to path + ".corrupt" and the store starts empty: the daemon never
// refuses to start over its checkpoints, the sources fall back to their
// configured start position. A file that cannot be read (an I/O error, a
// permission) may still be good: it is moved aside to path + ".unreadable"
// the same way, and if even that fails, it is never written over: writes
// fail (and are retried, moving it aside first) until it can be moved.
package checkpoint
