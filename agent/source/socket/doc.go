// Package socket is the source that listens on a socket (`type: socket`,
// and the unix://, unixgram://, tcp:// and udp:// arguments of `agent
// tail`): applications and syslog clients write records to it.
//
// Listeners, one per source (listen:):
//
//	unix:///run/app.sock       Unix stream socket: records framed by lines or
//	                           RFC 6587 octet counting (framing:)
//	unixgram:///run/app.dgram  Unix datagram socket: one record per datagram
//	tcp://127.0.0.1:5140       TCP, framed like unix://
//	udp://127.0.0.1:5140       UDP: one record per datagram
//
// A TCP or UDP address without a host (tcp://:5140) listens on loopback;
// any other interface, 0.0.0.0 included, must be written out. A host name
// is resolved from /etc/hosts (never DNS) to the address it binds, the
// first IPv4 one as Listen takes it (localhost without an entry is
// 127.0.0.1): the source listens there, and BindAddress, ListenAddress and
// Config.Equivalent compare addresses so, as does the agent to refuse two
// sources on one address and to reload. A reload from
// tcp://127.0.0.1:5140 to tcp://localhost:5140 changes nothing when
// nothing else changed (the running source, its listener and connections
// stay: Equivalent); with other changes the new source takes the port
// once the old one stopped, rather than being refused with "address
// already in use". A really different address is bound before anything
// stops. A name not in /etc/hosts is compared as written and resolved by
// Listen as usual. A port is compared as a number (05140 is 5140, the
// port bound). 0.0.0.0, [::] and [::ffff:0.0.0.0] compare as [::]
// where Go listens on them with one dual-stack socket (a host with IPv6):
// they are that one socket. A wildcard binds its port on every address:
// the kernel cannot bind it and another address of the same port and
// network while either listens, so the agent refuses two sources on such a
// pair in a configuration (Config.PortClash: validate, run and reload),
// and a reload between a wildcard and one address of the same port with
// what to do; the running listener stays.
//
// Socket files are created with mode (default 0660) and group. The mode is
// set right after bind: until then the file has the umask's permissions
// (0755 under the usual 022 umask, which lets only the owner connect). A
// socket file left by a crash is replaced only if nobody listens on it (a
// connect is refused); a live socket, a regular file or anything else at
// the path is an error and is never removed. On a clean stop the socket
// file is removed, if it is still the one this source made. The group must
// exist (Config.CheckFiles: validate and reload check it).
//
// Run listens; Bind (source.Binder) listens ahead of Run, so that a reload
// that adds or moves a socket source is refused, with the running pipeline
// untouched, when the address cannot be had.
//
// Framing of streams (framing:): lines cuts at "\n" ("\r\n" too);
// octet_counting reads RFC 6587 "LEN SP MSG" frames only. With format:
// syslog, framing: lines takes both, told apart per record as rsyslog's
// imtcp does: a syslog line starts with "<", so a record that starts with
// a digit 1-9, more digits and a space is an octet-counted frame (what
// logger --octet-count, rsyslog's omfwd with TCP_Framing="octet-counted"
// and syslog-ng's syslog() send); digits without a space start a line.
// A newline right after a frame ends it. framing: octet_counting stays
// strict (a record that is no frame closes the connection), and format
// lines or json never look for frames (a line "200 OK" is a line).
//
// Empty records are dropped, counted (agent_socket_dropped_records_total
// {reason="empty"}): an empty line of a stream ("\n", "\r\n"), an empty
// datagram and a datagram that is only a newline alike; they carry
// nothing (keepalives, `echo | nc`), and format json or syslog would only
// count them as parse failures. The file source, which mirrors files,
// keeps empty lines.
//
// Formats (format:): lines passes records as received; json checks each is
// one JSON value; syslog parses RFC 5424 and RFC 3164 (BSD, as syslog(3)
// writes it to /dev/log, with or without hostname) into one JSON object
//
//	{"timestamp":"2026-12-06T07:10:00.123Z","host":"web01","app":"sshd",
//	 "procid":"1234","msgid":"ID47","facility":"auth","severity":"info",
//	 "structured_data":{"id@32473":{"k":"v"}},"message":"..."}
//
// (absent fields left out; an RFC 3164 timestamp gets the agent's year and
// zone). A record that does not parse, or whose JSON would be longer than
// max_record_bytes, is passed on raw and counted
// (agent_socket_parse_failures_total); nothing is dropped for its format.
// The parsers are hand-written single passes without allocation.
//
// Limits: max_record_bytes bounds a record; a longer one is truncated
// (truncate_marker appended) or, with on_oversize: close, dropped with its
// connection; both counted, and logged at WARN at most once a minute per
// source (the client, the limit, the record's size). max_connections bounds open stream
// connections: one more waits in the listen backlog (wait) or is accepted
// and closed (refuse, counted). idle_timeout closes a connection that sent
// nothing for that long. Memory per connection is one 64 KiB read buffer
// plus at most max_record_bytes+1 of a record in progress. A connection
// that ends (EOF, half-close, reset, idle) inside a record delivers what
// it had, counted as partial. On stop, each connection is read for 100 ms
// more (what its client already sent), then closed.
//
// Backpressure: records are emitted from the connection's goroutine as
// they are framed. While the flow blocks (a full spool with when_full:
// block), that goroutine stops reading: the kernel's buffers fill and the
// client blocks in its writes; nothing is lost. Datagrams cannot wait: the
// reader copies each into a queue of datagram_queue entries that one
// goroutine hands to the flow; a datagram arriving while the queue is full
// is dropped and counted (reason spool_full).
//
// A socket cannot be read again: the source is no source.Committer, so its
// flow takes the spool path. What a crash can lose is in README.md
// ("Sockets").
//
// The flow's emit is safe for concurrent use (it takes the flow's lock);
// each connection emits from its own goroutine. Record.Data is only valid
// during the emit call.
//
// The source is a source.BatchSource: under RunBatch, the whole records of
// one read (those that lie in the read buffer, and syslog records
// formatted into a per-batch arena), and the datagrams queued at once, go
// to the flow in one EmitBatch call, which takes the flow's locks once; a
// record the framer gathered across reads or truncated is emitted on its
// own, after what is pending, so the order is kept. The source's counters
// are updated once per read. Memory per connection adds the batch's
// records (at most 1024) and its arena (flushed at 256 KiB).
package socket
