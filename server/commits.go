package server

import (
	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"go.uber.org/zap"
)

// CommitHook is the job service's one after-commit hook (jobs.Config.OnCommit): it counts what
// every committed unit of work did (m) and logs it, a line an event. Writes over HTTP are logged
// at info, events from the bus at debug (the consumer logs their rejections and parking), the
// watchdog's crashes at warn, automatic-reschedule decisions at info when planned.
func CommitHook(log *zap.Logger, m *metrics.Jobs) func(jobs.Commit) {
	return func(c jobs.Commit) {
		m.Commit(c)
		for _, ev := range c.Events {
			logEvent(log, ev)
		}
	}
}

func logEvent(log *zap.Logger, ev jobs.Event) {
	r := ev.Result
	fields := []zap.Field{
		zap.String("job_uuid", r.Job.UUID.String()),
		zap.String("verdict", string(r.Verdict)),
		zap.String("state_from", string(r.StateFrom)),
		zap.String("state_to", string(r.Job.State)),
		zap.String("source", string(ev.Meta.Origin)),
	}
	if ev.Meta.MessageID != "" {
		fields = append(fields, zap.String("message_id", ev.Meta.MessageID))
	}
	if ev.Meta.Actor != "" {
		fields = append(fields, zap.String("actor", ev.Meta.Actor))
	}
	switch {
	case ev.Kind == statemachine.EventAutoReschedule && ev.Auto != nil:
		d := ev.Auto
		fields = append(fields, zap.Int("attempt", r.Job.Attempt))
		switch {
		case d.Planned:
			log.Info("automatic reschedule planned", append(fields, zap.Time("due_at", d.DueAt), zap.Duration("delay", d.Delay))...)
		case d.Reason == statemachine.SkipRequestIDTaken:
			log.Warn("automatic reschedule declined", append(fields, zap.String("reason", string(d.Reason)))...)
		default:
			log.Debug("no automatic reschedule", append(fields, zap.String("reason", string(d.Reason)))...)
		}
	case ev.Meta.Origin == statemachine.OriginWatchdog && r.Verdict == statemachine.Applied:
		var reason []string
		if r.Job.Crash != nil {
			reason = r.Job.Crash.KeyVals["reason"]
		}
		log.Warn("watchdog crashed job", append(fields, zap.Strings("reason", reason),
			zap.String("taskname", r.Job.TaskName), zap.String("item", r.Job.Item))...)
	case ev.Meta.Origin == statemachine.OriginAMQP || ev.Meta.Origin == statemachine.OriginFedmsg:
		if ce := log.Check(zap.DebugLevel, "job "+string(ev.Kind)); ce != nil {
			ce.Write(fields...)
		}
	default:
		if ev.Kind == statemachine.EventReschedule || (ev.Kind == statemachine.EventCreate && r.Job.RescheduledFrom != nil) {
			fields = append(fields, zap.Int("attempt", r.Job.Attempt))
		}
		log.Info("job "+string(ev.Kind), fields...)
	}
}
