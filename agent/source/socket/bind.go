package socket

import (
	"context"
	"net"
	"os"
)

// bound is a listening socket: ln for streams, pc for datagrams, and the
// identity of the socket file this source created (Unix sockets).
type bound struct {
	ln   net.Listener
	pc   net.PacketConn
	mine os.FileInfo
}

func (b *bound) close() {
	if b.ln != nil {
		b.ln.Close()
	}
	if b.pc != nil {
		b.pc.Close()
	}
}

// BindAddress names the address the source listens on ("tcp
// 127.0.0.1:5140", "unix /run/app.sock"): two sources with the same one
// cannot listen at once. A TCP or UDP host is resolved as Listen resolves
// it (from /etc/hosts only: tcp://localhost:5140 is "tcp 127.0.0.1:5140"),
// so that a reload from one spelling of an address to another does not
// bind it ahead while the running source holds it.
func (s *Source) BindAddress() string { return s.addr.network + " " + s.addr.resolvedAddress() }

// Bind listens now, before Run: the agent calls it when a reload adds or
// changes a socket source, so that an address it cannot have (in use by
// another program, not of this host, a directory that does not exist)
// refuses the reload before anything stops, rather than stopping the
// agent once the new flow starts. Run then serves this listener. Release
// gives it back if Run will not be called.
func (s *Source) Bind() error {
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	if s.held != nil {
		return nil
	}
	b, err := s.listen(context.Background())
	if err != nil {
		return err
	}
	s.held = b
	return nil
}

// Release closes what Bind took and removes the socket file it created; a
// no-op without one (or once Run took it).
func (s *Source) Release() {
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	if s.held == nil {
		return
	}
	s.held.close()
	s.removeSocketFile(s.held.mine)
	s.held = nil
}

// takeBound returns the listener Bind took, or listens now.
func (s *Source) takeBound(ctx context.Context) (*bound, error) {
	s.bindMu.Lock()
	b := s.held
	s.held = nil
	s.bindMu.Unlock()
	if b != nil {
		return b, nil
	}
	return s.listen(ctx)
}

// listen makes room for a Unix socket file (a stale one is replaced),
// listens (on the address BindAddress names), and sets the socket file's
// mode and group.
func (s *Source) listen(ctx context.Context) (*bound, error) {
	if s.addr.isUnix() {
		if err := s.prepareSocketFile(); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	b := &bound{}
	var err error
	if s.addr.stream() {
		b.ln, err = lc.Listen(ctx, s.addr.network, s.addr.resolvedAddress())
		if ul, ok := b.ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // removeSocketFile removes it if it is still ours
		}
	} else {
		b.pc, err = lc.ListenPacket(ctx, s.addr.network, s.addr.resolvedAddress())
	}
	if err != nil {
		return nil, err
	}
	if s.addr.isUnix() {
		if b.mine, err = s.ownSocketFile(); err != nil {
			b.close()
			s.removeSocketFile(b.mine)
			return nil, err
		}
	}
	return b, nil
}
