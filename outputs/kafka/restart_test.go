package kafka

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestSend_BrokerRestartMidStreamLosesNothingAndDuplicatesNothing stops the
// broker while batches are in flight and starts it again on the same port
// with the same data directory (its log and producer state), as a broker
// restart does. Before it stops, the broker keeps appending produce requests
// but its answers are lost (the worst case: written, not acknowledged).
// Those requests are resent with the same producer ID and sequence numbers,
// so the restarted broker drops what it already had. (With idempotent:
// false this test sees duplicates.)
func TestSend_BrokerRestartMidStreamLosesNothingAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := freePort(t)
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(3, testTopic)}
	var lossy lossyListener
	c1, err := kfake.NewCluster(append(opts, kfake.ListenFn(lossy.listen))...)
	require.NoError(t, err)
	brokers := c1.ListenAddrs()

	o := newOutput(t, Config{
		Brokers: brokers, Topic: testTopic, Idempotent: true, Linger: time.Millisecond,
		SendTimeout: 30 * time.Second, ProduceTimeout: 2 * time.Second,
	})
	const n = 30000
	batches := lineBatches(t, 0, n, 100, 5)
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		deadline := time.Now().Add(90 * time.Second)
		for k, b := range batches {
			if k == len(batches)/3 {
				close(started)
			}
			deliver(t, o, b, deadline)
		}
	})
	<-started
	lossy.drop.Store(true)
	require.Eventually(t, func() bool { return lossy.dropped.Load() >= 1 }, 30*time.Second, 10*time.Millisecond,
		"answers were lost")
	c1.Close()
	var c2 *kfake.Cluster
	require.Eventually(t, func() bool { // the port may take a moment to be free
		c2, err = kfake.NewCluster(opts...)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	t.Cleanup(c2.Close)
	wg.Wait()
	requireExactlyOnce(t, readAll(t, brokers, testTopic, n), n)
}

// lossyListener wraps the broker's connections: once drop is set, what the
// broker writes (its answers) is lost while it keeps reading requests.
type lossyListener struct {
	drop    atomic.Bool
	dropped atomic.Int64 // writes lost
}

func (l *lossyListener) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return lossyLn{ln, l}, nil
}

type lossyLn struct {
	net.Listener
	l *lossyListener
}

func (ln lossyLn) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return lossyConn{c, ln.l}, nil
}

type lossyConn struct {
	net.Conn
	l *lossyListener
}

func (c lossyConn) Write(p []byte) (int, error) {
	if c.l.drop.Load() {
		c.l.dropped.Add(1)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestSend_LeaderMovesMidStreamLosesNothingAndDuplicatesNothing moves the
// partitions' leaders between three brokers while batches are sent: the
// old leader answers NOT_LEADER_OR_FOLLOWER, the producer reloads metadata
// and resends to the new one.
func TestSend_LeaderMovesMidStreamLosesNothingAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, kfake.NumBrokers(3))
	o, err := newOutputOpts("k", testConfig(c), Settings{}, fastMetadata)
	require.NoError(t, err)
	defer o.Close(t.Context())
	const n = 10000
	batches := lineBatches(t, 0, n, 100, 5)
	deadline := time.Now().Add(60 * time.Second)
	moves := 0
	for k, b := range batches {
		if k%5 == 2 {
			// A shuffle may leave partition 0 where it was (one chance in
			// three): shuffle until it moves.
			before := c.LeaderFor(testTopic, 0)
			for range 50 {
				c.ShufflePartitionLeaders()
				if c.LeaderFor(testTopic, 0) != before {
					moves++
					break
				}
			}
		}
		deliver(t, o, b, deadline)
	}
	require.Positive(t, moves, "partition 0's leader moved")
	requireExactlyOnce(t, readAll(t, c.ListenAddrs(), testTopic, n), n)
}
