package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EC2 metadata keys (EC2Config.Fields) and their IMDS paths.
var ec2Paths = map[string]string{
	"instance_id":       "instance-id",
	"instance_type":     "instance-type",
	"region":            "placement/region",
	"availability_zone": "placement/availability-zone",
	"private_ip":        "local-ipv4",
}

var ec2Keys = slices.Sorted(maps.Keys(ec2Paths))

const (
	defaultIMDS        = "http://169.254.169.254"
	defaultIMDSTimeout = time.Second
	defaultIMDSRefresh = time.Hour
	imdsTokenTTL       = "21600"
)

// ec2Fetcher holds EC2 instance metadata, fetched with IMDSv2 (a session
// token from PUT /latest/api/token, then GETs with it) at start and
// refreshed in the background.
type ec2Fetcher struct {
	cfg    EC2Config
	client *http.Client
	log    *slog.Logger
	names  map[string]string // metadata key: field name
	cur    atomic.Pointer[[][2]string]
	stop   context.CancelFunc
	wg     sync.WaitGroup
	warned bool
}

func newEC2Fetcher(cfg EC2Config, client *http.Client, log *slog.Logger) (*ec2Fetcher, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = defaultIMDS
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultIMDSTimeout
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = defaultIMDSRefresh
	}
	if client == nil {
		// No proxy: the metadata service is link-local.
		client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	f := &ec2Fetcher{cfg: cfg, client: client, log: log, names: cfg.Fields}
	if len(f.names) == 0 {
		f.names = map[string]string{}
		for _, k := range ec2Keys {
			f.names[k] = k
		}
	}
	empty := [][2]string{}
	f.cur.Store(&empty)
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	if err := f.refresh(ctx); err != nil {
		f.warned = true
		log.Warn("EC2 instance metadata unavailable: its fields are left out until a refresh succeeds", "error", err, "refresh", cfg.Refresh)
	}
	f.wg.Add(1)
	go f.run(ctx)
	return f, nil
}

// fields returns the current metadata fields (name, value).
func (f *ec2Fetcher) fields() [][2]string { return *f.cur.Load() }

func (f *ec2Fetcher) close() {
	f.stop()
	f.wg.Wait()
}

func (f *ec2Fetcher) run(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(f.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f.refresh(ctx); err != nil && ctx.Err() == nil && !f.warned {
				f.warned = true
				f.log.Warn("EC2 instance metadata refresh failed: the last values are kept", "error", err)
			} else if err == nil {
				f.warned = false
			}
		}
	}
}

func (f *ec2Fetcher) refresh(ctx context.Context) error {
	token, err := f.do(ctx, http.MethodPut, "/latest/api/token", "")
	if err != nil {
		return fmt.Errorf("process: ec2 metadata token: %w", err)
	}
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(f.names)) {
		v, err := f.do(ctx, http.MethodGet, "/latest/meta-data/"+ec2Paths[k], token)
		if err != nil {
			return fmt.Errorf("process: ec2 metadata %s: %w", k, err)
		}
		out = append(out, [2]string{f.names[k], v})
	}
	f.cur.Store(&out)
	return nil
}

func (f *ec2Fetcher) do(ctx context.Context, method, path, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.cfg.Endpoint+path, nil)
	if err != nil {
		return "", err
	}
	if token == "" {
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", imdsTokenTTL)
	} else {
		req.Header.Set("X-aws-ec2-metadata-token", token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if len(body) == 0 {
		return "", errors.New(path + ": empty answer")
	}
	return strings.TrimSpace(string(body)), nil
}
