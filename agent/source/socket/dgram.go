package socket

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/kplagent/agent/agent/source"
)

// runDatagram reads datagrams (UDP or Unix datagram), one record each.
//
// A datagram cannot wait: its sender does not block, and a reader that
// stops reading makes the kernel drop what comes next, uncounted. So the
// reader never waits for the flow: it copies each datagram into a queue of
// datagram_queue entries that one goroutine empties into the flow; when the
// flow blocks (spool full with when_full: block) and the queue is full, a
// datagram is dropped and counted (reason spool_full).
func (s *Source) runDatagram(ctx context.Context, cancel context.CancelCauseFunc, emit source.Emit, batch source.EmitBatch) error {
	b, err := s.takeBound(ctx)
	if err != nil {
		return err
	}
	pc := b.pc
	defer s.removeSocketFile(b.mine)
	conn := pc.(interface {
		net.PacketConn
		Read([]byte) (int, error)
	})
	s.listening(pc.LocalAddr())

	queue := make(chan []byte, s.cfg.DatagramQueue)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sink := &recordSink{s: s, ctx: ctx, cancel: cancel, emit: emit, batch: batch}
		// Each datagram is its own copy: it stays valid in a batch.
		out := func(d []byte) error {
			fl := s.datagramFlags(&d)
			fl.stable = true
			return sink.out(d, fl)
		}
		stopped := false
		for d := range queue {
			if stopped {
				s.drop(DropShutdown, 1)
				continue
			}
			err := out(d)
			// What else is queued already goes in the same batch (never
			// waiting for more).
		drain:
			for err == nil && len(sink.pending) > 0 && len(sink.pending) < maxBatch {
				select {
				case d, ok := <-queue:
					if !ok {
						break drain
					}
					err = out(d)
				default:
					break drain
				}
			}
			if ferr := sink.flushBatch(); err == nil {
				err = ferr
			}
			sink.flush()
			if err != nil {
				stopped = true
			}
		}
	}()
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			pc.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()

	size := min(int(s.cfg.MaxRecordBytes)+1, maxDatagramBytes)
	buf := make([]byte, size)
	for ctx.Err() == nil {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("datagram read failed", "error", err)
			sleepCtx(ctx, 10*time.Millisecond)
			continue
		}
		if n > 0 && n < len(buf) && buf[n-1] == '\n' {
			// Some senders end a datagram with a newline (or CRLF):
			// not part of the record.
			n--
			if n > 0 && buf[n-1] == '\r' {
				n--
			}
		}
		if n == 0 {
			// Empty, or only a newline: no record, as an empty line of a
			// stream.
			s.drop(DropEmpty, 1)
			continue
		}
		if n == len(buf) && n > int(s.cfg.MaxRecordBytes) && s.cfg.OnOversize == OversizeClose {
			s.drop(DropOversize, 1)
			continue
		}
		d := make([]byte, n)
		copy(d, buf[:n])
		select {
		case queue <- d:
		default:
			s.drop(DropSpoolFull, 1)
		}
	}
	close(stop)
	pc.Close()
	close(queue)
	wg.Wait()
	return nil
}

// datagramFlags truncates a datagram longer than max_record_bytes (or cut
// by the read buffer) and flags it.
func (s *Source) datagramFlags(d *[]byte) frameFlags {
	max := int(s.cfg.MaxRecordBytes)
	if len(*d) <= max && len(*d) < maxDatagramBytes {
		return frameFlags{}
	}
	size := len(*d)
	keep := min(size, max) - len(s.marker)
	*d = append((*d)[:keep:keep], s.marker...)
	// A datagram that filled the read buffer may have been longer: the
	// kernel cut the rest.
	return frameFlags{truncated: true, size: size, sizeAtLeast: size >= min(max+1, maxDatagramBytes)}
}
