package kafka

import (
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// purgeInterval is the least time between two purges of one topic: the
// Sends running at once all see UNKNOWN_TOPIC_ID, one purge serves them.
const purgeInterval = 2 * time.Second

// recreated makes the producers forget topics that were deleted and created
// again. franz-go keeps a topic's ID once it produced to it and fails the
// topic's records with UNKNOWN_TOPIC_ID when the ID changes, until the topic
// is purged from the client ("we do not adopt the new ID"). Without the
// purge every retry failed the same way, forever.
type recreated struct {
	mu      sync.Mutex
	last    map[string]time.Time // topic: its last purge began
	running sync.WaitGroup       // purges in progress (Close waits)
}

// purge purges topic from cl, at most once per purgeInterval, in a
// goroutine: it is called from the producer's promises, and the purge waits
// for the client's metadata loop. The records of the topic that cl still
// buffers fail (retryable) and are retried by the sender.
func (o *Output) purgeRecreated(cl *kgo.Client, topic string) {
	rc := &o.recreated
	now := time.Now()
	rc.mu.Lock()
	if t, ok := rc.last[topic]; ok && now.Sub(t) < purgeInterval {
		rc.mu.Unlock()
		return
	}
	if rc.last == nil {
		rc.last = make(map[string]time.Time)
	}
	rc.last[topic] = now
	rc.running.Add(1)
	rc.mu.Unlock()
	o.rl.logf(slog.LevelWarn, "recreated:"+topic, "topic was deleted and recreated (its ID changed): the producer forgets the old one and its records are retried",
		"topic", topic)
	go func() {
		defer rc.running.Done()
		cl.PurgeTopicsFromProducing(topic) // returns at once once cl is closed
	}()
}
