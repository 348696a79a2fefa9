package socket

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kplagent/agent/agent/source"
)

// stopDrain is how long, once the source stops, a connection is still read
// (what its client sent before the stop is in the socket's buffer) before
// it is closed.
const stopDrain = 100 * time.Millisecond

// runStream accepts connections (Unix stream or TCP) and serves each in its
// own goroutine until ctx is done.
func (s *Source) runStream(ctx context.Context, cancel context.CancelCauseFunc, emit source.Emit, batch source.EmitBatch) error {
	b, err := s.takeBound(ctx)
	if err != nil {
		return err
	}
	ln := b.ln
	defer s.removeSocketFile(b.mine)
	s.listening(ln.Addr())

	var (
		mu      sync.Mutex
		open    = map[net.Conn]struct{}{}
		closing bool
		wg      sync.WaitGroup
	)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		closing = true
		at := time.Now().Add(stopDrain)
		for c := range open {
			c.SetReadDeadline(at) // the reader ends, delivering what it has
		}
		mu.Unlock()
	}()
	defer func() { <-stopped }()
	defer wg.Wait()

	slots := make(chan struct{}, s.cfg.MaxConnections)
	wait := s.cfg.OnMaxConnections == MaxConnsWait
	backoff := 5 * time.Millisecond
	for {
		if wait {
			// At max_connections, stop accepting: more clients wait in
			// the listen backlog (then their connect blocks or fails).
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
		}
		c, err := ln.Accept()
		if err != nil {
			if wait {
				<-slots
			}
			if ctx.Err() != nil {
				return nil
			}
			// Out of descriptors or another transient failure: wait and
			// try again, as net/http does.
			s.log.Warn("accept failed; retrying", "error", err, "retry_in", backoff)
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !wait {
			select {
			case slots <- struct{}{}:
			default:
				s.refused.Add(1)
				c.Close()
				continue
			}
		}
		mu.Lock()
		if closing {
			mu.Unlock()
			c.Close()
			<-slots
			return nil
		}
		open[c] = struct{}{}
		mu.Unlock()
		s.conns.Add(1)
		s.connsTotal.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(ctx, cancel, c, emit, batch)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
			c.Close()
			s.conns.Add(-1)
			<-slots
		}()
	}
}

// serve reads one connection until its end, an error, idle_timeout or the
// source's stop. Records are emitted as they are framed: while the flow
// blocks (a full spool with when_full: block) this connection is not read,
// so its client blocks in its writes and nothing is lost.
func (s *Source) serve(ctx context.Context, cancel context.CancelCauseFunc, c net.Conn, emit source.Emit, batch source.EmitBatch) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	sink := &recordSink{s: s, ctx: ctx, cancel: cancel, emit: emit, batch: batch, remote: remote(c)}
	fr := newFramer(s.cfg.Framing == FramingOctetCounted, int(s.cfg.MaxRecordBytes), s.marker, s.cfg.OnOversize == OversizeClose, sink.out)
	// A syslog line starts with "<": a record that starts with a digit is
	// an octet-counted frame (RFC 6587), which syslog clients send on the
	// same port (rsyslog's imtcp takes both).
	fr.auto = s.cfg.Framing == FramingLines && s.cfg.Format == FormatSyslog
	idle := s.cfg.IdleTimeout
	var deadline, stopAt time.Time
	for {
		if idle > 0 {
			// Moving the deadline costs a timer update: do it at most
			// every idle/8.
			if now := time.Now(); deadline.Sub(now) < idle-idle/8 {
				deadline = now.Add(idle)
				c.SetReadDeadline(deadline)
			}
		}
		if ctx.Err() != nil {
			// Stopping: read what the client already sent for stopDrain
			// more, then end.
			if stopAt.IsZero() {
				stopAt = time.Now().Add(stopDrain)
			}
			c.SetReadDeadline(stopAt)
		}
		n, rerr := c.Read(buf)
		if n > 0 {
			err := fr.feed(buf[:n])
			// The read's records go before buf is read into again (those
			// framed before a framing error too).
			if ferr := sink.flushBatch(); err == nil {
				err = ferr
			}
			sink.flush()
			if err != nil {
				s.frameError(err, c)
				return
			}
		}
		if rerr == nil {
			continue
		}
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() && ctx.Err() == nil {
			s.idle.Add(1)
			s.log.Debug("closing an idle connection", "remote", remote(c), "idle_timeout", idle)
		} else if rerr != io.EOF && ctx.Err() == nil {
			s.log.Debug("connection read failed", "remote", remote(c), "error", rerr)
		}
		// The end of the connection (EOF, a half-close, a reset, idle or
		// stop): a record begun is delivered, counted as partial.
		err := fr.end()
		if ferr := sink.flushBatch(); err == nil {
			err = ferr
		}
		sink.flush()
		if err != nil {
			s.frameError(err, c)
		}
		return
	}
}

// frameError counts why a connection's framing stopped, and says it (at
// most once a minute: a misconfigured client reconnects and fails again):
// the connection was closed and the rest of what the client sent dropped,
// which nothing else tells the operator.
func (s *Source) frameError(err error, c net.Conn) {
	var msg, hint string
	switch {
	case errors.Is(err, errOversize):
		s.drop(DropOversize, 1)
		msg = "closed a connection: a record exceeds max_record_bytes (on_oversize: close); the rest of what it sent is dropped"
		hint = "raise max_record_bytes, or on_oversize: truncate keeps the start of such records"
	case errors.Is(err, errMalformedFrame):
		s.drop(DropMalformedFrame, 1)
		msg = "closed a connection: a malformed RFC 6587 octet-counting frame (not LENGTH SP MESSAGE); the rest of what it sent is dropped"
		hint = "framing: octet_counting takes frames only; a client that ends its messages with a newline needs framing: lines (with format: syslog it takes both)"
	default:
		return
	}
	now := time.Now()
	s.warnMu.Lock()
	quiet := !s.lastFrameWarn.IsZero() && now.Sub(s.lastFrameWarn) < time.Minute
	if !quiet {
		s.lastFrameWarn = now
	}
	s.warnMu.Unlock()
	if !quiet {
		st := s.Stats()
		s.log.Warn(msg, "remote", remote(c), "listen", s.cfg.Listen, "hint", hint,
			"malformed_frames", st.Dropped[DropMalformedFrame], "oversize_closed", st.Dropped[DropOversize])
	}
}

func remote(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "unix"
}
