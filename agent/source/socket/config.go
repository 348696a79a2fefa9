package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os/user"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kplagent/agent/internal/units"
)

// Formats of the records a socket receives.
const (
	FormatLines  = "lines"  // each record as received
	FormatJSON   = "json"   // each record must be one JSON value; invalid ones pass raw, counted
	FormatSyslog = "syslog" // RFC 5424 or RFC 3164, parsed into a JSON object; others pass raw, counted
)

// Framings of a stream socket (TCP, Unix stream).
const (
	FramingLines        = "lines"          // records end with "\n" ("\r\n" too)
	FramingOctetCounted = "octet_counting" // RFC 6587 3.4.1: "LEN SP MSG"
)

// What happens to a record longer than max_record_bytes (on_oversize).
const (
	OversizeTruncate = "truncate" // keep the first bytes, append truncate_marker, count
	OversizeClose    = "close"    // count, drop the record and close the connection
)

// What happens to a connection beyond max_connections (on_max_connections).
const (
	MaxConnsWait   = "wait"   // it waits in the listen backlog until one closes
	MaxConnsRefuse = "refuse" // it is accepted and closed at once, counted
)

// Network kinds, the schemes of Listen.
const (
	netUnix     = "unix"
	netUnixgram = "unixgram"
	netTCP      = "tcp"
	netUDP      = "udp"
)

// Defaults, each justified.
const (
	// DefaultMaxRecordBytes matches the file and stdin sources: the Kinesis
	// record limit (1 MiB) minus 4 KiB of room for the KPL aggregate.
	DefaultMaxRecordBytes = units.ByteSize(1<<20 - 4<<10)
	// DefaultMaxConnections bounds memory: each connection holds a 64 KiB
	// read buffer plus at most one record in progress.
	DefaultMaxConnections = 256
	// DefaultIdleTimeout closes a connection that sent nothing for this
	// long (a client that connects and never writes holds a slot).
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultDatagramQueue is how many datagrams wait for the flow while it
	// cannot take them (spool full); more are dropped (spool_full).
	DefaultDatagramQueue = 1024
	// DefaultMode lets the owner and the group write (connect).
	DefaultMode = "0660"
	// DefaultTruncateMarker ends a truncated record, as in the file source.
	DefaultTruncateMarker = "\n"
)

// maxMaxRecordBytes bounds max_record_bytes: a connection keeps up to that
// much of a record that did not end yet. A datagram is at most 64 KiB
// anyway (UDP) or the socket's buffer (unixgram).
const maxMaxRecordBytes = units.ByteSize(64 << 20)

// Config is a socket source as written in the agent's YAML
// (sources[].socket). Start from DefaultConfig.
type Config struct {
	// Listen is where to listen: unix:///run/app.sock (stream),
	// unixgram:///run/app.dgram (datagrams), tcp://127.0.0.1:5140 or
	// udp://127.0.0.1:5140. A TCP or UDP address without a host
	// (tcp://:5140) listens on loopback only; any other interface, 0.0.0.0
	// included, must be written out.
	Listen string `yaml:"listen"`
	// Format is lines, json or syslog.
	Format string `yaml:"format"`
	// Framing is how a stream is cut into records: lines or
	// octet_counting. Datagrams are one record each.
	Framing string `yaml:"framing"`
	// Mode is the socket file's permission (octal, "0660"); Group its
	// group (a name or a number; "" keeps the agent's).
	Mode  string `yaml:"mode"`
	Group string `yaml:"group"`
	// MaxRecordBytes bounds one record; OnOversize says what a longer one
	// does (truncate or close).
	MaxRecordBytes units.ByteSize `yaml:"max_record_bytes"`
	OnOversize     string         `yaml:"on_oversize"`
	// TruncateMarker ends a truncated record; "" adds nothing.
	TruncateMarker string `yaml:"truncate_marker"`
	// MaxConnections bounds open stream connections; OnMaxConnections says
	// what one more does (wait or refuse).
	MaxConnections   int    `yaml:"max_connections"`
	OnMaxConnections string `yaml:"on_max_connections"`
	// IdleTimeout closes a connection that sent nothing for so long (0:
	// never).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DatagramQueue is how many received datagrams may wait for the flow;
	// when it is full, more are dropped and counted (reason spool_full).
	DatagramQueue int `yaml:"datagram_queue"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Format:           FormatLines,
		Framing:          FramingLines,
		Mode:             DefaultMode,
		MaxRecordBytes:   DefaultMaxRecordBytes,
		OnOversize:       OversizeTruncate,
		TruncateMarker:   DefaultTruncateMarker,
		MaxConnections:   DefaultMaxConnections,
		OnMaxConnections: MaxConnsWait,
		IdleTimeout:      DefaultIdleTimeout,
		DatagramQueue:    DefaultDatagramQueue,
	}
}

// Validate reports every problem, each prefixed with its YAML key. It does
// no I/O (a group name is looked up when the source starts).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, f string, a ...any) { errs = append(errs, fmt.Errorf(key+": "+f, a...)) }
	if c.Listen == "" {
		bad("listen", "required (unix:///PATH, unixgram:///PATH, tcp://HOST:PORT or udp://HOST:PORT)")
	} else if _, err := parseListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	switch c.Format {
	case FormatLines, FormatJSON, FormatSyslog:
	default:
		bad("format", "must be %q, %q or %q, got %q", FormatLines, FormatJSON, FormatSyslog, c.Format)
	}
	switch c.Framing {
	case FramingLines, FramingOctetCounted:
	default:
		bad("framing", "must be %q or %q, got %q", FramingLines, FramingOctetCounted, c.Framing)
	}
	if _, err := parseMode(c.Mode); err != nil {
		bad("mode", "%v", err)
	}
	if c.MaxRecordBytes < 1 || c.MaxRecordBytes > maxMaxRecordBytes {
		bad("max_record_bytes", "must be between 1 and %s", maxMaxRecordBytes)
	} else if int64(len(c.TruncateMarker)) >= int64(c.MaxRecordBytes) {
		bad("truncate_marker", "must be shorter than max_record_bytes (%s)", c.MaxRecordBytes)
	}
	switch c.OnOversize {
	case OversizeTruncate, OversizeClose:
	default:
		bad("on_oversize", "must be %q or %q, got %q", OversizeTruncate, OversizeClose, c.OnOversize)
	}
	if c.MaxConnections < 1 {
		bad("max_connections", "must be at least 1")
	}
	switch c.OnMaxConnections {
	case MaxConnsWait, MaxConnsRefuse:
	default:
		bad("on_max_connections", "must be %q or %q, got %q", MaxConnsWait, MaxConnsRefuse, c.OnMaxConnections)
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout", "must not be negative")
	}
	if c.DatagramQueue < 1 {
		bad("datagram_queue", "must be at least 1")
	}
	return errors.Join(errs...)
}

// LargestRecord is the most data one record can have: max_record_bytes. A
// syslog message whose JSON form would be longer is passed on raw (and
// counted as a parse failure), so formatting never exceeds it.
func (c *Config) LargestRecord() (int64, string) { return int64(c.MaxRecordBytes), "max_record_bytes" }

// addr is a parsed Listen.
type addr struct {
	network string // unix, unixgram, tcp, udp
	address string // a path or host:port
}

func (a addr) stream() bool   { return a.network == netUnix || a.network == netTCP }
func (a addr) isUnix() bool   { return a.network == netUnix || a.network == netUnixgram }
func (a addr) String() string { return a.network + "://" + a.address }

// parseListen parses unix:///path, unixgram:///path, tcp://host:port and
// udp://host:port. A missing host is loopback.
func parseListen(s string) (addr, error) {
	const want = "unix:///PATH, unixgram:///PATH, tcp://HOST:PORT or udp://HOST:PORT"
	u, err := url.Parse(s)
	if err != nil {
		// "127.0.0.1:5140" (no scheme) or a bad port: url's own words
		// ("first path segment in URL cannot contain colon") name
		// neither the fix nor the forms.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return addr{}, fmt.Errorf("%q: want %s (%v)", s, want, err)
	}
	switch u.Scheme {
	case netUnix, netUnixgram:
		if u.Host != "" {
			return addr{}, fmt.Errorf("%q: a socket path is absolute: %s:///PATH", s, u.Scheme)
		}
		if u.Path == "" || u.Path[0] != '/' {
			return addr{}, fmt.Errorf("%q: want %s:///ABSOLUTE/PATH", s, u.Scheme)
		}
		if len(u.Path) > 107 {
			return addr{}, fmt.Errorf("%q: a Unix socket path is at most 107 bytes", s)
		}
		return addr{network: u.Scheme, address: u.Path}, nil
	case netTCP, netUDP:
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return addr{}, fmt.Errorf("%q: want %s://HOST:PORT", s, u.Scheme)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			return addr{}, fmt.Errorf("%q: want %s://HOST:PORT: %w", s, u.Scheme, err)
		}
		p, err := strconv.Atoi(port) // digits only: url.Parse checked
		if err != nil || p < 0 || p > 65535 {
			return addr{}, fmt.Errorf("%q: bad port %q", s, port)
		}
		if host == "" {
			host = "127.0.0.1" // loopback unless another interface is named
		}
		// The port as a number: 05140 is 5140, one socket, so the
		// addresses compared (duplicates, PortClash, a reload keeping its
		// listener) are the addresses bound.
		return addr{network: u.Scheme, address: net.JoinHostPort(host, strconv.Itoa(p))}, nil
	case "":
		return addr{}, fmt.Errorf("%q: want a URL: %s", s, want)
	default:
		return addr{}, fmt.Errorf("%q: scheme %q is not one of unix, unixgram, tcp, udp: want %s", s, u.Scheme, want)
	}
}

// parseMode parses an octal permission such as "0660".
func parseMode(s string) (uint32, error) {
	if s == "" {
		return 0, errors.New("required (octal, e.g. \"0660\")")
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("want an octal permission such as \"0660\", got %q", s)
	}
	return uint32(v), nil
}

// lookupGroup returns the id of a group name or number.
func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil && id >= 0 {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("no group %q on this host (getent group lists them; \"\" keeps the agent's)", g)
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(grp.Gid)
}

// ListenAddress names the address the source listens on ("tcp
// 127.0.0.1:5140"), as Source.BindAddress does, its host resolved
// (resolvedAddress); "" when listen does not parse. The agent refuses two
// sources on one address.
func (c Config) ListenAddress() string {
	a, err := parseListen(c.Listen)
	if err != nil {
		return ""
	}
	return a.network + " " + a.resolvedAddress()
}

// Equivalent reports whether other (a *Config or Config) is this
// configuration, listen compared by the address it binds
// (tcp://localhost:5140 is tcp://127.0.0.1:5140): a reload keeps a running
// source, its listener and its connections, when only the spelling of its
// address changed.
func (c *Config) Equivalent(other any) bool {
	var o Config
	switch v := other.(type) {
	case *Config:
		if v == nil {
			return false
		}
		o = *v
	case Config:
		o = v
	default:
		return false
	}
	a, b := *c, o
	if a.Listen != b.Listen {
		la, lb := a.ListenAddress(), b.ListenAddress()
		if la == "" || la != lb {
			return false
		}
		a.Listen, b.Listen = "", ""
	}
	return reflect.DeepEqual(a, b)
}

// PortClash says why this source and other (a *Config or Config) cannot
// listen at once though their addresses differ, "" when they can: the same
// network (tcp or udp, each its own ports) and port, and one of them is a
// wildcard whose socket takes that port on the other's address too.
// 0.0.0.0 binds the port on every IPv4 address; [::] on every IPv6 one,
// and on every IPv4 one as well where Go binds it as the one dual-stack
// socket (wildcardIsDualStack: 0.0.0.0 is that socket too there). The
// kernel refuses the second bind, whichever comes first, with "address
// already in use" (Go sets SO_REUSEADDR on a TCP listener, which does not
// let a bind share a port with a listening wildcard). A host name not in
// /etc/hosts is not compared (what it resolves to is not known here), nor
// is port 0 (each takes a port of its own); Unix sockets have no port.
func (c *Config) PortClash(other any) string {
	var o Config
	switch v := other.(type) {
	case *Config:
		if v == nil {
			return ""
		}
		o = *v
	case Config:
		o = v
	default:
		return ""
	}
	a, err := parseListen(c.Listen)
	if err != nil {
		return ""
	}
	b, err := parseListen(o.Listen)
	if err != nil || !wildcardClash(a, b) {
		return ""
	}
	return fmt.Sprintf("%s and %s are one port, and a wildcard address (0.0.0.0 or [::]) binds its port on "+
		"every address of the host: the kernel refuses the second bind with \"address already in use\"",
		c.Listen, o.Listen)
}

// wildcardClash reports whether the kernel refuses a and b bound at once
// because one of them is a wildcard covering the other's address (see
// PortClash); the same address is not a clash here (the agent refuses it
// as a duplicate).
func wildcardClash(a, b addr) bool {
	if a.network != b.network || (a.network != netTCP && a.network != netUDP) {
		return false
	}
	ra, rb := a.resolvedAddress(), b.resolvedAddress()
	if ra == rb {
		return false
	}
	ha, pa, err := net.SplitHostPort(ra)
	if err != nil {
		return false
	}
	hb, pb, err := net.SplitHostPort(rb)
	if err != nil {
		return false
	}
	na, err := strconv.Atoi(pa)
	if err != nil || na == 0 {
		return false
	}
	if nb, err := strconv.Atoi(pb); err != nil || na != nb {
		return false
	}
	ia, err := netip.ParseAddr(ha)
	if err != nil {
		return false
	}
	ib, err := netip.ParseAddr(hb)
	if err != nil {
		return false
	}
	return covers(ia, ib) || covers(ib, ia)
}

// covers reports whether a socket bound on wild (as resolvedAddress
// writes it) takes the port on ip too.
func covers(wild, ip netip.Addr) bool {
	if !wild.IsUnspecified() || wild.Zone() != "" || ip.IsUnspecified() {
		// Two wildcards that differ are 0.0.0.0 and [::] where they
		// are two sockets (IPv4 only and IPv6 only): both bind.
		return false
	}
	if wild.Is4() {
		return ip.Is4()
	}
	return ip.Is6() || wildcardIsDualStack()
}

// hostsOnly resolves names from /etc/hosts alone: its DNS dial fails at
// once, so comparing addresses never waits for the network.
var hostsOnly = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("socket: no DNS lookup to compare addresses")
}}

// resolvedAddress is the host:port a TCP or UDP listen binds, its host
// resolved as Listen does (the first IPv4 address of the name, else its
// first address), from /etc/hosts only; localhost (and NAME.localhost,
// RFC 6761) without an entry there is 127.0.0.1; 0.0.0.0 and [::] are
// both [::] where they bind one dual-stack socket (boundHost). A name not
// found is kept as written, as is a Unix socket's path.
func (a addr) resolvedAddress() string {
	if a.isUnix() {
		return a.address
	}
	host, port, err := net.SplitHostPort(a.address)
	if err != nil {
		return a.address
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(boundHost(ip), port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, err := hostsOnly.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
			return net.JoinHostPort("127.0.0.1", port)
		}
		return a.address
	}
	pick := ips[0].Unmap()
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			pick = ip.Unmap()
			break
		}
	}
	return net.JoinHostPort(boundHost(pick), port)
}

// boundHost is the host a tcp or udp Listen on ip binds: [::ffff:127.0.0.1]
// binds 127.0.0.1; an unspecified address (0.0.0.0, ::, ::ffff:0.0.0.0)
// binds the one dual-stack socket [::] where Go listens so
// (wildcardIsDualStack), the same for every spelling.
func boundHost(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.IsUnspecified() && ip.Zone() == "" && wildcardIsDualStack() {
		return "::"
	}
	return ip.String()
}

// wildcardIsDualStack reports whether Listen on network tcp or udp binds
// an unspecified address, 0.0.0.0 as well as ::, as one IPv6 socket that
// takes IPv4 too (IPV6_V6ONLY off). Go does so where the host has
// IPv4-mapped IPv6 addresses (favoriteAddrFamily in package net), which is
// the usual Linux host, whatever net.ipv6.bindv6only says; then
// udp://0.0.0.0:5140 and udp://[::]:5140 are one socket, and binding one
// while the other listens fails with "address already in use". Go is
// asked once, by where a UDP socket on 0.0.0.0 lands. Without IPv6 the
// two stay apart: 0.0.0.0 binds IPv4, and [::] fails to bind.
var wildcardIsDualStack = sync.OnceValue(func() bool {
	pc, err := net.ListenPacket("udp", "0.0.0.0:0")
	if err != nil {
		return false
	}
	defer pc.Close()
	ua, ok := pc.LocalAddr().(*net.UDPAddr)
	return ok && ua.IP.To4() == nil
})

// CheckFiles checks what the host must have for the source to start (as
// `agent validate` and a reload check TLS files): the socket file's group.
// A reload to a group that does not exist was accepted, and its source
// then failed to start and stopped the agent.
func (c *Config) CheckFiles() error {
	if c.Group == "" {
		return nil
	}
	if a, err := parseListen(c.Listen); err != nil || !a.isUnix() {
		return nil
	}
	if _, err := lookupGroup(c.Group); err != nil {
		return fmt.Errorf("group: %w", err)
	}
	return nil
}
