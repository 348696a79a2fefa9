package spool

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestMinFree_AutoIsTheSmallerOf256MiBAnd5PercentOfTheFileSystem(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total int64
		floor int64
	}{
		{"1GiB partition", 1 << 30, (1 << 30) / 100 * 5},
		{"2GiB volume", 2 << 30, (2 << 30) / 100 * 5},
		{"100GiB disk", 100 << 30, 256 << 20},
		{"size unknown", 0, 256 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MinFreeBytes = MinFreeAuto
			cfg.WhenFull = WhenFullDropNewest
			fs := &faultFS{fs: osFS{}}
			fs.set(func(f *faultFS) { f.total, f.free = max(tc.total, 1), tc.floor+(1<<20) })
			if tc.total == 0 {
				fs.set(func(f *faultFS) { f.total = 0 })
			}
			s := open(t, cfg, Settings{fs: fs})
			require.Equal(t, tc.floor, s.minFree)
			_, err := s.Append(t.Context(), payload(1, 100))
			require.NoError(t, err, "1 MiB above the floor: room")

			fs.set(func(f *faultFS) { f.free = tc.floor - 1 })
			require.NoError(t, s.measureFree())
			_, err = s.Append(t.Context(), payload(2, 100))
			require.ErrorIs(t, err, ErrFull, "below the floor: full")
		})
	}
}

func TestMinFree_YAML(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want MinFree
	}{
		{"auto", MinFreeAuto},
		{"AUTO", MinFreeAuto},
		{"0", 0},
		{"64MiB", 64 << 20},
	} {
		var c struct {
			M MinFree `yaml:"m"`
		}
		require.NoError(t, yaml.Unmarshal([]byte("m: "+tc.in), &c), tc.in)
		require.Equal(t, tc.want, c.M, tc.in)
		out, err := yaml.Marshal(c)
		require.NoError(t, err)
		var back struct {
			M MinFree `yaml:"m"`
		}
		require.NoError(t, yaml.Unmarshal(out, &back))
		require.Equal(t, tc.want, back.M, "round trip of %s", tc.in)
	}
	var c struct {
		M MinFree `yaml:"m"`
	}
	err := yaml.Unmarshal([]byte("m: lots"), &c)
	require.ErrorContains(t, err, `"auto"`)
	require.Equal(t, MinFreeAuto, DefaultConfig().MinFreeBytes)
}

// A spool that cannot take anything as it opens says so once, at WARN, with
// the numbers; one that can says nothing.
func TestMinFree_FullAtStartIsLoggedOnceWithTheNumbers(t *testing.T) {
	t.Run("free disk below the floor", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.MinFreeBytes = 100 << 20
		cfg.SyncInterval = 5 * time.Millisecond // the maintainer measures often
		fs := &faultFS{fs: osFS{}}
		fs.set(func(f *faultFS) { f.free = 10 << 20 })
		log, rec := newLog(t)
		s := open(t, cfg, Settings{fs: fs, Logger: log})
		waitFor(t, "a few free-space checks", func() bool { return time.Since(time.Unix(0, s.freeAt.Load())) < time.Second })
		require.Equal(t, 1, rec.count(slog.LevelWarn, "cannot accept anything at start"))
		requireAttr(t, rec, "cannot accept anything at start", "free_bytes", int64(10<<20))
		requireAttr(t, rec, "cannot accept anything at start", "min_free_bytes", int64(100<<20))
	})
	t.Run("backlog fills max_bytes", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.SegmentBytes = 4 << 10
		cfg.MaxBytes = 8 << 10
		cfg.WhenFull = WhenFullDropNewest
		s := open(t, cfg)
		for i := 0; ; i++ {
			entry := payload(uint64(i), 500)
			if i >= 14 {
				entry = []byte{1} // the smallest entry, till not even that fits
			}
			if _, err := s.Append(t.Context(), entry); err != nil {
				require.ErrorIs(t, err, ErrFull)
				break
			}
		}
		require.NoError(t, s.Close())
		log, rec := newLog(t)
		open(t, cfg, Settings{Logger: log})
		require.Equal(t, 1, rec.count(slog.LevelWarn, "cannot accept anything at start"))
		requireAttr(t, rec, "cannot accept anything at start", "max_bytes", int64(8<<10))
	})
	t.Run("room", func(t *testing.T) {
		log, rec := newLog(t)
		open(t, testConfig(t), Settings{Logger: log})
		require.Zero(t, rec.count(slog.LevelWarn, "cannot accept anything"))
	})
}

// requireAttr checks that the record containing msg has attribute key = want.
func requireAttr(t *testing.T, rec *logRecorder, msg, key string, want int64) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.recs {
		if !strings.Contains(r.Message, msg) {
			continue
		}
		found := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				found = true
				require.Equal(t, want, a.Value.Int64(), key)
			}
			return true
		})
		require.True(t, found, "no attribute %s in %q", key, r.Message)
		return
	}
	t.Fatalf("no record %q", msg)
}

// An append blocked by the free-disk floor is woken to look again when space
// comes back for reasons that have nothing to do with acks.
func TestMinFree_BlockedAppendRechecksFreeSpace(t *testing.T) {
	cfg := testConfig(t)
	cfg.MinFreeBytes = 100 << 20
	fs := &faultFS{fs: osFS{}}
	fs.set(func(f *faultFS) { f.free = 10 << 20 })
	s := open(t, cfg, Settings{fs: fs})
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), payload(1, 100))
		done <- err
	}()
	waitBlocked(t, s, 1)
	fs.set(func(f *faultFS) { f.free = 1 << 40 })
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the blocked append never looked at the free space again")
	}
}
