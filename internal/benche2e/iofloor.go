package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/spool"
)

// The I/O floor of the spool path (-io-floor): what putting every byte
// through the page cache costs this machine, in CPU seconds per GB of the
// process doing it, next to what the spool package itself costs for the same
// bytes. The spool path of `make bench-e2e` costs the direct path's CPU plus
// at least the spool's share of this; when the machine is CPU-bound (two
// cores shared by agent and sink) throughput follows CPU per GB, so this
// floor bounds how close the spool row can come to the text row.
//
// Each row runs in a child process of its own (rusage per row), writing
// -size bytes into 64 MiB segment files in 1 MiB write(2)s and fdatasync'ing
// each file once full, as the spool's writer and syncer do:
//
//   - write: into new files, unlinked once read (the spool's segments).
//   - write+read: and read back with 1 MiB preads (the sender's NextBatch).
//   - spool floor: and a copy into a stage before the write and a CRC32C
//     (Castagnoli, as the frames) on write and on read: the spool's design,
//     without its bookkeeping.
//   - recycled write, recycled spool floor: the same into files kept from
//     earlier segments and overwritten in place (no page allocation, no
//     block reservation, no freeing at unlink). The spool does not do this;
//     it bounds what recycling segment files could save.
//   - spool package: spool.Open (sync: interval, 64 MiB segments), one
//     goroutine appending 50 KiB entries (the default aggregation.max_bytes)
//     and one reading them with NextBatch into a 1 MiB + 64 KiB slab and
//     acknowledging each, as the agent's sender does.
const (
	floorSegBytes = 64 << 20
	floorRunBytes = 1 << 20
	floorEntry    = 50 << 10
)

type ioFloorRow struct {
	name    string
	recycle bool
}

var ioFloorRows = []ioFloorRow{
	{name: "write"},
	{name: "write+read"},
	{name: "spool-floor"},
	{name: "recycled-write", recycle: true},
	{name: "recycled-spool-floor", recycle: true},
	{name: "spool-package"},
}

// runIOFloor measures every row runs times, interleaved, and prints a table.
func runIOFloor(dir string, size int64, runs int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("I/O floor of the spool path: %d MiB in %d MiB segment files, %d KiB write(2)s, dir %s\n", size>>20, floorSegBytes>>20, floorRunBytes>>10, dir)
	fmt.Printf("load average before: %s\n", loadAvg())
	all := make([][]result, len(ioFloorRows))
	for i := 0; i < runs; i++ {
		for k, rw := range ioFloorRows {
			d := filepath.Join(dir, "iofloor-"+rw.name)
			if err := os.RemoveAll(d); err != nil {
				return err
			}
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if rw.recycle {
				// Files of earlier segments, made here so that the child's
				// rusage holds only the overwrite.
				if err := makeSpareFiles(d, 3, floorSegment(size)); err != nil {
					return err
				}
			}
			r, err := measure(exec.Command(self, "-io-floor-child", rw.name, "-dir", d, "-size", fmt.Sprint(size)), size)
			_ = os.RemoveAll(d)
			if err != nil {
				return fmt.Errorf("io floor %s: %w", rw.name, err)
			}
			fmt.Printf("run %d %-21s %5.0f MB/s  %5.2f CPU-s/GB (user+sys %.2fs in %.2fs)\n", i+1, rw.name, r.mbps, r.cpuPerG, r.cpu.Seconds(), r.wall.Seconds())
			all[k] = append(all[k], r)
		}
	}
	fmt.Printf("load average after: %s\n\n| row | CPU-s per GB (median) | CPU-s per GB (runs) |\n| --- | ---: | --- |\n", loadAvg())
	for k, rw := range ioFloorRows {
		var v []string
		for _, r := range all[k] {
			v = append(v, fmt.Sprintf("%.2f", r.cpuPerG))
		}
		_, med, _ := summarize(all[k])
		fmt.Printf("| %s | %.2f | %s |\n", rw.name, med, strings.Join(v, " "))
	}
	return nil
}

// floorSegment is the segment size of a floor row of size bytes: 64 MiB, or
// size rounded up to whole runs when smaller (a quick run, or a test).
func floorSegment(size int64) int64 {
	return min(floorSegBytes, max(floorRunBytes, (size+floorRunBytes-1)/floorRunBytes*floorRunBytes))
}

func makeSpareFiles(dir string, n int, seg int64) error {
	run := floorData()
	for i := 0; i < n; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("spare-%d", i)))
		if err != nil {
			return err
		}
		for off := int64(0); off < seg; off += int64(len(run)) {
			if _, err := f.Write(run); err != nil {
				f.Close()
				return err
			}
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func floorData() []byte {
	b := make([]byte, floorRunBytes)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// ioFloorChild is one row, in a process of its own.
func ioFloorChild(row, dir string, size int64) error {
	if row == "spool-package" {
		return spoolPackageRow(dir, size)
	}
	read := row != "write" && row != "recycled-write"
	full := row == "spool-floor" || row == "recycled-spool-floor"
	recycle := strings.HasPrefix(row, "recycled-")
	var spares []string
	if recycle {
		names, err := filepath.Glob(filepath.Join(dir, "spare-*"))
		if err != nil || len(names) == 0 {
			return fmt.Errorf("no spare files in %s", dir)
		}
		spares = names
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	src := floorData()
	stage := make([]byte, floorRunBytes)
	rbuf := make([]byte, floorRunBytes)
	var sum uint32
	seg := floorSegment(size)
	for i := 0; int64(i)*seg < size; i++ {
		p := filepath.Join(dir, fmt.Sprintf("seg-%d", i))
		var f *os.File
		var err error
		if recycle {
			old := spares[0]
			spares = spares[1:]
			if err = os.Rename(old, p); err == nil {
				f, err = os.OpenFile(p, os.O_RDWR, 0)
			}
		} else {
			f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		}
		if err != nil {
			return err
		}
		for off := int64(0); off < seg; off += floorRunBytes {
			b := src
			if full {
				copy(stage, src)
				b = stage
				sum ^= crc32.Update(0, table, b)
			}
			if _, err := f.Write(b); err != nil {
				return err
			}
		}
		if err := datasync(f); err != nil {
			return err
		}
		if read {
			for off := int64(0); off < seg; off += floorRunBytes {
				if _, err := f.ReadAt(rbuf, off); err != nil {
					return err
				}
				if full {
					sum ^= crc32.Update(0, table, rbuf)
				}
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		if recycle {
			spares = append(spares, p)
		} else if err := os.Remove(p); err != nil {
			return err
		}
	}
	if sum == 1 { // keep the CRCs from being optimised away
		fmt.Fprintln(os.Stderr, "io floor: checksum", sum)
	}
	return nil
}

// spoolPackageRow appends size bytes of 50 KiB entries to a spool while a
// reader takes them with NextBatch and acknowledges them.
func spoolPackageRow(dir string, size int64) error {
	cfg := spool.DefaultConfig()
	cfg.Dir = dir
	cfg.MaxBytes = 4 << 30
	cfg.SegmentBytes = units.ByteSize(floorSegment(size))
	cfg.MinFreeBytes = 0
	s, err := spool.Open(cfg, spool.Settings{})
	if err != nil {
		return err
	}
	entry := floorData()[:floorEntry]
	n := int(size / floorEntry)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, floorRunBytes+64<<10)
		var ents []spool.Entry
		for got := 0; got < n; {
			var err error
			ents, _, err = s.NextBatch(ctx, buf[:0], 500, ents[:0])
			if err != nil {
				done <- err
				return
			}
			for _, e := range ents {
				if len(e.Data) != floorEntry {
					done <- fmt.Errorf("entry %d: %d bytes", e.ID, len(e.Data))
					return
				}
				if err := s.Ack(e.ID); err != nil {
					done <- err
					return
				}
			}
			got += len(ents)
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		if _, err := s.Append(ctx, entry); err != nil {
			return errors.Join(err, s.Close())
		}
	}
	err = <-done
	return errors.Join(err, s.Close())
}
