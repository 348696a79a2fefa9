package agent

import (
	"context"
	"time"

	"github.com/kplagent/agent/internal/cwmetrics"
)

// startCloudWatch starts publishing the pipeline's metrics to CloudWatch
// when metrics.cloudwatch is enabled. The returned stop publishes a last
// time, within what is left of the shutdown's deadline: call it once the
// pipeline has stopped, before the spools close. Publishing that cannot
// start (no region) is logged, and the pipeline runs without it.
func (a *Agent) startCloudWatch() (stop func(), err error) {
	cfg := a.cfg.Metrics.CloudWatch
	if cfg == nil || !cfg.Enabled {
		return func() {}, nil
	}
	log := a.log.With("component", "cloudwatch")
	p, err := cwmetrics.New(*cfg, cwmetrics.Settings{Gatherer: a.m.reg, Registerer: a.m.reg,
		Logger: log, UserAgent: "agent/" + a.set.Version})
	if err != nil {
		// Metrics must not stop the pipeline they describe (a region that
		// only IMDS would give, unreachable): the agent runs without them.
		log.Error("CloudWatch metrics are off until the agent restarts: they cannot start", "error", err)
		return func() {}, nil
	}
	p.Start()
	return func() {
		ctx, cancel := context.WithDeadline(context.Background(), a.lastPublishBy())
		defer cancel()
		p.Stop(ctx)
	}, nil
}

// minLastPublish is the least time the last publish gets when the
// shutdown's margin is spent already.
const minLastPublish = 500 * time.Millisecond

// lastPublishBy is when the last publish must end: the end of the
// shutdown's margin (closeBy), or soon when the margin is spent or Run
// ended without a shutdown.
func (a *Agent) lastPublishBy() time.Time {
	soon := time.Now().Add(minLastPublish)
	if a.closeBy.IsZero() || a.closeBy.Before(soon) {
		return soon
	}
	return a.closeBy
}
