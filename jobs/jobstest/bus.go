package jobstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// busTests cover what the bus consumers and the publisher relay need: message dedup, parking,
// rejected messages, publishing the outbox.
var busTests = []test{
	{"BusDedupsOnMessageID", testBusDedup},
	{"BusTriggerIsIdempotentOnRequestID", testBusTriggerIdempotent},
	{"BusTriggerWithTakenUUIDIsRejected", testBusTriggerTakenUUID},
	{"BusParksEventsUntilTheJobIsCreated", testBusParking},
	{"BusParkedEventsApplyInOneBatch", testBusParkingInBatch},
	{"BusParkedEventsExpire", testBusParkExpiry},
	{"BusTriggersSharingARequestID", testBusSharedRequestID},
	{"BusParkingRacesWithCreate", testBusParkingRace},
	{"RefusedCreatesLeaveParkedEvents", testRefusedCreatesLeaveParked},
	{"BusLateAndConflictingEventsAreRejected", testBusLateConflict},
	{"BusRejectedListNewestFirst", testBusRejectedList},
	{"BusPruneSeen", testBusPruneSeen},
	{"OutboxDeletePublished", testOutboxPublish},
}

func busMeta(id string) statemachine.Meta {
	return statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: id}
}

func busTrigger(id string, n statemachine.NewJob) jobs.BusMessage {
	return jobs.BusMessage{Meta: busMeta(id), Topic: "org.example.taskotron.job.trigger",
		Body: []byte(`{"trigger":"` + id + `"}`), Create: &n}
}

func busStart(id string, job uuid.UUID) jobs.BusMessage {
	return jobs.BusMessage{Meta: busMeta(id), Topic: "org.example.taskotron.runtask.start",
		Body: []byte(`{"uuid":"` + job.String() + `"}`), JobUUID: job, Event: &statemachine.Event{Start: &statemachine.Start{
			Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/7"}}}}
}

func busEnd(id string, job uuid.UUID, state statemachine.State, cause statemachine.Cause) jobs.BusMessage {
	end := &statemachine.End{State: state}
	if state == statemachine.Crashed {
		end.Crash = &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: cause}
	}
	return jobs.BusMessage{Meta: busMeta(id), Topic: "org.example.taskotron.runtask.end",
		Body: []byte(`{"uuid":"` + job.String() + `","state":"` + string(state) + `"}`), JobUUID: job, Event: &statemachine.Event{End: end}}
}

func applyBus(t *testing.T, s *jobs.Service, msgs ...jobs.BusMessage) []jobs.BusResult {
	t.Helper()
	res, err := s.ApplyBus(context.Background(), msgs)
	if err != nil {
		t.Fatalf("apply bus messages: %v", err)
	}
	if len(res) != len(msgs) {
		t.Fatalf("got %d results for %d messages", len(res), len(msgs))
	}
	return res
}

func outcomes(rs []jobs.BusResult) []jobs.BusOutcome {
	out := make([]jobs.BusOutcome, len(rs))
	for i, r := range rs {
		out[i] = r.Outcome
	}
	return out
}

func wantOutcomes(t *testing.T, rs []jobs.BusResult, want ...jobs.BusOutcome) {
	t.Helper()
	got := outcomes(rs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got outcomes %v, want %v", got, want)
	}
}

func rejectedList(t *testing.T, b storage.Backend, q storage.RejectedQuery) []storage.RejectedMessage {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 1000
	}
	rs, err := b.Rejected(context.Background(), q)
	if err != nil {
		t.Fatalf("list rejected: %v", err)
	}
	return rs
}

func testBusDedup(t *testing.T, open env) {
	s, b := newStore(t, open)
	id := uuid.New()
	n := newJob()
	n.UUID = id
	rs := applyBus(t, s, busTrigger("m1", n), busStart("m2", id), busStart("m2", id))
	wantOutcomes(t, rs, jobs.BusApplied, jobs.BusApplied, jobs.BusDuplicate)
	if !rs[2].Seen {
		t.Errorf("a repeated id in one batch: got seen=false, want true")
	}
	if rs[0].Kind != statemachine.EventCreate || rs[1].Kind != statemachine.EventStart {
		t.Errorf("got kinds %s %s, want create start", rs[0].Kind, rs[1].Kind)
	}
	// A redelivery in a later batch: nothing happens, nothing is recorded.
	rs = applyBus(t, s, busTrigger("m1", n), busStart("m2", id), busEnd("m3", id, statemachine.Finished, ""))
	wantOutcomes(t, rs, jobs.BusDuplicate, jobs.BusDuplicate, jobs.BusApplied)
	if !rs[0].Seen || !rs[1].Seen || rs[2].Seen {
		t.Errorf("got seen %v %v %v, want true true false", rs[0].Seen, rs[1].Seen, rs[2].Seen)
	}
	hist, _ := b.History(context.Background(), id)
	if len(hist) != 3 {
		t.Fatalf("got %d history entries, want 3 (create, start, end): %s", len(hist), js(hist))
	}
	if hist[1].Origin != statemachine.OriginAMQP || hist[1].MessageID != "m2" {
		t.Errorf("start entry: got origin=%s message_id=%s, want amqp m2", hist[1].Origin, hist[1].MessageID)
	}
	job, _ := b.Job(context.Background(), id)
	if job.State != statemachine.Finished || job.Source != nil || job.RequestID == "" {
		t.Errorf("got state=%s source=%v request_id=%q, want FINISHED, no source, a request id", job.State, job.Source, job.RequestID)
	}
	if n := len(outbox(t, b)); n != 3 {
		t.Errorf("got %d outbox messages, want 3", n)
	}
}

func testBusTriggerIdempotent(t *testing.T, open env) {
	s, b := newStore(t, open)
	n := newJob()
	n.RequestID = "req-7"
	rs := applyBus(t, s, busTrigger("a", n))
	wantOutcomes(t, rs, jobs.BusApplied)
	first := rs[0].Result.Job
	if !rs[0].Result.Created || first.UUID.Version() != 7 {
		t.Errorf("got created=%v uuid version %d, want true 7", rs[0].Result.Created, first.UUID.Version())
	}
	rs = applyBus(t, s, busTrigger("b", n))
	wantOutcomes(t, rs, jobs.BusDuplicate)
	if rs[0].Seen || rs[0].Result.Job.UUID != first.UUID || rs[0].Result.Verdict != statemachine.Duplicate {
		t.Errorf("got seen=%v job %s verdict %s, want false %s duplicate", rs[0].Seen, rs[0].Result.Job.UUID, rs[0].Result.Verdict, first.UUID)
	}
	// An HTTP create with the same request id finds the job too.
	res, err := s.Create(context.Background(), n, httpMeta("c"))
	if err != nil || res.Created || res.Job.UUID != first.UUID {
		t.Errorf("http create: got created=%v job %s err %v, want the bus job", res.Created, res.Job.UUID, err)
	}
	hist, _ := b.History(context.Background(), first.UUID)
	if len(hist) != 3 {
		t.Errorf("got %d history entries, want 3 creates", len(hist))
	}
}

func testBusTriggerTakenUUID(t *testing.T, open env) {
	s, b := newStore(t, open)
	n := newJob()
	n.UUID = uuid.New()
	n.RequestID = "first"
	create(t, s, n)
	n.RequestID = "second"
	rs := applyBus(t, s, busTrigger("t2", n), busStart("s2", n.UUID))
	wantOutcomes(t, rs, jobs.BusRejected, jobs.BusApplied)
	if rs[0].Reason != storage.RejectConflict {
		t.Errorf("got reason %s, want conflict", rs[0].Reason)
	}
	rej := rejectedList(t, b, storage.RejectedQuery{})
	if len(rej) != 1 || rej[0].MessageID != "t2" || rej[0].Field != "uuid" || rej[0].JobUUID == nil || *rej[0].JobUUID != n.UUID {
		t.Errorf("got rejected %s, want t2 naming field uuid and the job", js(rej))
	}
	// The first request again, naming another uuid: not a repeat, as over HTTP.
	other := newJob()
	other.UUID = uuid.New()
	other.RequestID = "first"
	rs = applyBus(t, s, busTrigger("t3", other))
	wantOutcomes(t, rs, jobs.BusRejected)
	if rs[0].Reason != storage.RejectConflict {
		t.Errorf("request id of another job: got reason %s, want conflict", rs[0].Reason)
	}
	if _, err := b.Job(context.Background(), other.UUID); err == nil {
		t.Error("a job was created for a request id that made another job")
	}
}

func testBusParking(t *testing.T, open env) {
	s, b := newStore(t, open)
	id := uuid.New()
	rs := applyBus(t, s, busEnd("e", id, statemachine.Crashed, statemachine.CauseTask))
	wantOutcomes(t, rs, jobs.BusParked)
	rs = applyBus(t, s, busStart("s", id))
	wantOutcomes(t, rs, jobs.BusParked)
	if _, err := b.Job(context.Background(), id); err == nil {
		t.Fatal("parking created the job")
	}
	if n := len(outbox(t, b)); n != 0 {
		t.Fatalf("got %d outbox messages before the job exists, want 0", n)
	}
	// The trigger arrives last, over HTTP: the parked events apply in lifecycle order, the
	// start before the end, as if they had come in the order they happened.
	n := newJob()
	n.UUID = id
	res, err := s.Create(context.Background(), n, httpMeta("late-trigger"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Job.State != statemachine.Crashed || len(res.Parked) != 2 {
		t.Fatalf("got created=%v state=%s parked=%d, want true CRASHED 2", res.Created, res.Job.State, len(res.Parked))
	}
	if p := res.Parked[0]; p.Kind != statemachine.EventStart || p.Result.Verdict != statemachine.Applied || p.Meta.MessageID != "s" || p.Meta.Origin != statemachine.OriginAMQP {
		t.Errorf("first parked: got %s %s %s %s, want start applied s amqp", p.Kind, p.Result.Verdict, p.Meta.MessageID, p.Meta.Origin)
	}
	if p := res.Parked[1]; p.Kind != statemachine.EventEnd || p.Result.Verdict != statemachine.Applied || p.Reason != "" {
		t.Errorf("second parked: got %s %s reason %s, want end applied", p.Kind, p.Result.Verdict, p.Reason)
	}
	got := readBack(t, b, res.Job)
	if got.Runner == nil || got.Runner.JobID != "all/7" || got.StartedAt == nil {
		t.Errorf("got runner=%v started_at=%v, want the start's", got.Runner, got.StartedAt)
	}
	msgs := outbox(t, b)
	var topics []string
	for _, m := range msgs {
		topics = append(topics, strings.TrimPrefix(m.Topic, "org.example.execdb.job."))
	}
	if strings.Join(topics, " ") != "scheduled running crashed.task.task" {
		t.Errorf("got outbox topics %v, want scheduled running crashed.task.task", topics)
	}
	hist, _ := b.History(context.Background(), id)
	if len(hist) != 3 || hist[1].MessageID != "s" || hist[2].MessageID != "e" || hist[2].Verdict != statemachine.Applied {
		t.Errorf("got history %s, want create, start s, end e", js(hist))
	}
	if rej := rejectedList(t, b, storage.RejectedQuery{}); len(rej) != 0 {
		t.Errorf("got rejected %s, want none", js(rej))
	}
	// Nothing stays parked: the sweeper finds nothing to reject.
	expired, err := s.ExpireParked(context.Background(), 0, 100)
	if err != nil || len(expired) != 0 {
		t.Errorf("expire after create: got %d, %v; want none", len(expired), err)
	}
}

func testBusParkingInBatch(t *testing.T, open env) {
	s, b := newStore(t, open)
	id := uuid.New()
	n := newJob()
	n.UUID = id
	rs := applyBus(t, s, busEnd("e", id, statemachine.Finished, ""), busStart("s", id), busTrigger("t", n))
	wantOutcomes(t, rs, jobs.BusParked, jobs.BusParked, jobs.BusApplied)
	r := rs[2].Result
	if r.Job.State != statemachine.Finished || len(r.Parked) != 2 {
		t.Fatalf("got state %s with %d parked applied, want FINISHED 2", r.Job.State, len(r.Parked))
	}
	job := readBack(t, b, r.Job)
	if job.RequestID != n.RequestID && job.RequestID != id.String() {
		t.Errorf("got request id %q", job.RequestID)
	}
}

func testBusParkExpiry(t *testing.T, open env) {
	s, b := newStore(t, open)
	id := uuid.New()
	big := bytes.Repeat([]byte("x"), storage.MaxRejectedBody+10)
	m := busStart("lonely", id)
	m.Body = big
	applyBus(t, s, m)
	// Not yet: the clock advanced seconds, the TTL is an hour.
	if got, err := s.ExpireParked(context.Background(), time.Hour, 10); err != nil || len(got) != 0 {
		t.Fatalf("expire with 1h ttl: got %d, %v; want none", len(got), err)
	}
	got, err := s.ExpireParked(context.Background(), time.Millisecond, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("expire: got %d, %v; want 1", len(got), err)
	}
	rej := rejectedList(t, b, storage.RejectedQuery{})
	if len(rej) != 1 {
		t.Fatalf("got %d rejected, want 1", len(rej))
	}
	r := rej[0]
	if r.Reason != storage.RejectUnknownJob || r.MessageID != "lonely" || r.Transport != statemachine.OriginAMQP ||
		r.Topic != "org.example.taskotron.runtask.start" || r.JobUUID == nil || *r.JobUUID != id {
		t.Errorf("got rejected %s, want unknown_job for lonely", js(r))
	}
	if !r.BodyTruncated || len(r.Body) != storage.MaxRejectedBody {
		t.Errorf("got body of %d bytes truncated=%v size=%d, want %d truncated", len(r.Body), r.BodyTruncated, r.BodySize, storage.MaxRejectedBody)
	}
	// The job comes after all: the expired event is not applied.
	n := newJob()
	n.UUID = id
	res, err := s.Create(context.Background(), n, httpMeta("too-late"))
	if err != nil || res.Job.State != statemachine.Scheduled || len(res.Parked) != 0 {
		t.Errorf("create after expiry: got state %s parked %d err %v, want SCHEDULED 0", res.Job.State, len(res.Parked), err)
	}
}

// testBusParkingRaces creates jobs while their starts arrive: whichever commits first, every
// start is applied exactly once.
func testBusParkingRace(t *testing.T, open env) {
	s, b := newStore(t, open)
	const n = 30
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range ids {
		ids[i] = uuid.New()
		wg.Add(2)
		go func() {
			defer wg.Done()
			n := newJob()
			n.UUID = ids[i]
			if _, err := s.Create(context.Background(), n, httpMeta(fmt.Sprint("c", i))); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.ApplyBus(context.Background(), []jobs.BusMessage{busStart(fmt.Sprint("s", i), ids[i])}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		job, err := b.Job(context.Background(), id)
		if err != nil || job.State != statemachine.Running {
			t.Errorf("job %s: got %s %v, want RUNNING", id, job.State, err)
		}
	}
	if expired, _ := s.ExpireParked(context.Background(), 0, 100); len(expired) != 0 {
		t.Errorf("got %d events still parked, want 0", len(expired))
	}
}

func testBusLateConflict(t *testing.T, open env) {
	s, b := newStore(t, open)
	id := uuid.New()
	n := newJob()
	n.UUID = id
	rs := applyBus(t, s, busTrigger("t", n), busEnd("e1", id, statemachine.Finished, ""),
		busEnd("e2", id, statemachine.Crashed, statemachine.CauseMinion), busStart("s", id),
		busEnd("e3", id, statemachine.Finished, ""))
	// A start after the end is late, not rejected (CONTRACT section 2, v1.1): it fills in what
	// the job lacks and is in its history.
	wantOutcomes(t, rs, jobs.BusApplied, jobs.BusApplied, jobs.BusRejected, jobs.BusLate, jobs.BusDuplicate)
	if rs[2].Reason != storage.RejectConflict || rs[3].Reason != "" || rs[3].Result.Verdict != statemachine.Late {
		t.Errorf("got reasons %q %q, want conflict and none", rs[2].Reason, rs[3].Reason)
	}
	if j := rs[4].Result.Job; j.StartedAt == nil || j.Runner == nil {
		t.Errorf("the late start filled in nothing: %s", js(j))
	}
	if rs[2].Result.Verdict != statemachine.Conflict || rs[2].Result.Job.State != statemachine.Finished {
		t.Errorf("conflict result: got %s %s, want conflict FINISHED", rs[2].Result.Verdict, rs[2].Result.Job.State)
	}
	hist, _ := b.History(context.Background(), id)
	if len(hist) != 5 {
		t.Errorf("got %d history entries, want 5", len(hist))
	}
	rej := rejectedList(t, b, storage.RejectedQuery{})
	if len(rej) != 1 || rej[0].MessageID != "e2" || rej[0].Detail == "" || rej[0].JobUUID == nil || *rej[0].JobUUID != id {
		t.Errorf("got rejected %s, want e2 with details, listed under its job", js(rej))
	}
}

func testBusRejectedList(t *testing.T, open env) {
	s, b := newStore(t, open)
	var msgs []jobs.BusMessage
	for i := range 5 {
		reason := storage.RejectSchema
		if i%2 == 1 {
			reason = storage.RejectUndecodable
		}
		m := jobs.BusMessage{Meta: busMeta(fmt.Sprint("r", i)), Topic: "t\x00opic", Body: []byte{0xff, 0, byte(i)},
			Reject: &jobs.Rejection{Reason: reason, Field: "crash.cause", Detail: "bad\x00 value"}}
		if i == 4 {
			m.Meta.Origin = statemachine.OriginFedmsg
		}
		msgs = append(msgs, m)
	}
	rs := applyBus(t, s, msgs...)
	for i, r := range rs {
		if r.Outcome != jobs.BusRejected || r.Kind != "" {
			t.Errorf("message %d: got %s kind %q, want rejected, no kind", i, r.Outcome, r.Kind)
		}
	}
	all := rejectedList(t, b, storage.RejectedQuery{})
	if len(all) != 5 || all[0].MessageID != "r4" || all[4].MessageID != "r0" {
		t.Fatalf("got %s, want r4…r0", js(all))
	}
	r := all[4]
	if r.Topic != `"t\x00opic"` || r.Detail != `"bad\x00 value"` || !bytes.Equal(r.Body, []byte{0xff, 0, 0}) || r.BodySize != 3 || r.BodyTruncated {
		t.Errorf("got topic %q detail %q body %v size %d, want text that breaks the rule escaped, body bytes kept", r.Topic, r.Detail, r.Body, r.BodySize)
	}
	if r.Field != "crash.cause" || r.Reason != storage.RejectSchema || r.ReceivedAt.IsZero() || r.RejectedAt.IsZero() || r.ID == 0 {
		t.Errorf("got %s", js(r))
	}
	page := rejectedList(t, b, storage.RejectedQuery{Limit: 2})
	next := rejectedList(t, b, storage.RejectedQuery{Limit: 2, BeforeID: page[1].ID})
	if len(page) != 2 || len(next) != 2 || page[1].MessageID != "r3" || next[0].MessageID != "r2" {
		t.Errorf("pages: got %s then %s", js(page), js(next))
	}
	undecodable := rejectedList(t, b, storage.RejectedQuery{Reason: storage.RejectUndecodable})
	if len(undecodable) != 2 {
		t.Errorf("reason filter: got %d, want 2", len(undecodable))
	}
	fedmsg := rejectedList(t, b, storage.RejectedQuery{Transport: statemachine.OriginFedmsg})
	if len(fedmsg) != 1 || fedmsg[0].MessageID != "r4" {
		t.Errorf("transport filter: got %s, want r4", js(fedmsg))
	}
	if none := rejectedList(t, b, storage.RejectedQuery{Limit: -1}); len(none) != 0 {
		t.Errorf("limit -1: got %d, want 0", len(none))
	}
}

func testBusPruneSeen(t *testing.T, open env) {
	s, b := newStore(t, open)
	reject := jobs.BusMessage{Meta: busMeta("again"), Topic: "x", Reject: &jobs.Rejection{Reason: storage.RejectUndecodable}}
	applyBus(t, s, reject)
	wantOutcomes(t, applyBus(t, s, reject), jobs.BusDuplicate)
	if n, err := b.PruneSeen(context.Background(), t0); err != nil || n != 0 {
		t.Fatalf("prune before the message: got %d, %v; want 0", n, err)
	}
	if n, err := b.PruneSeen(context.Background(), t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("prune: got %d, %v; want 1", n, err)
	}
	wantOutcomes(t, applyBus(t, s, reject), jobs.BusRejected)
}

func testOutboxPublish(t *testing.T, open env) {
	s, b := newStore(t, open)
	ctx := context.Background()
	if st, err := b.OutboxStats(ctx); err != nil || st.Backlog != 0 || st.Oldest != nil {
		t.Fatalf("empty outbox stats: got %+v, %v", st, err)
	}
	for range 3 {
		create(t, s, newJob())
	}
	msgs := outbox(t, b)
	st, err := b.OutboxStats(ctx)
	if err != nil || st.Backlog != 3 || st.Oldest == nil || !st.Oldest.Equal(msgs[0].CreatedAt) {
		t.Fatalf("got stats %+v, %v; want 3 and the first message's time %v", st, err, msgs[0].CreatedAt)
	}
	if err := b.DeletePublished(ctx, []int64{msgs[0].ID, msgs[2].ID}); err != nil {
		t.Fatal(err)
	}
	rest := outbox(t, b)
	if len(rest) != 1 || rest[0].ID != msgs[1].ID {
		t.Fatalf("after publishing: got %s, want only message %d", js(rest), msgs[1].ID)
	}
	if st, _ := b.OutboxStats(ctx); st.Backlog != 1 || !st.Oldest.Equal(msgs[1].CreatedAt) {
		t.Errorf("after publishing: got stats %+v", st)
	}
	if err := b.DeletePublished(ctx, []int64{msgs[1].ID, msgs[0].ID}); err != nil {
		t.Errorf("deleting again: %v", err)
	}
	if n := len(outbox(t, b)); n != 0 {
		t.Errorf("got %d unpublished, want 0", n)
	}
	if err := b.DeletePublished(ctx, nil); err != nil {
		t.Errorf("deleting nothing: %v", err)
	}
	// Ids are not reused: what comes next sorts after what was published.
	create(t, s, newJob())
	if next := outbox(t, b); len(next) != 1 || next[0].ID <= msgs[2].ID {
		t.Errorf("got %s, want one message with an id above %d", js(next), msgs[2].ID)
	}
}

// testBusSharedRequestID: in one batch, a trigger whose uuid is taken is rejected without
// claiming its request id; the next trigger with that request id creates its job and gets the
// events parked for it; a third with the same request id is a duplicate and leaves the events
// parked for its own uuid alone.
func testBusSharedRequestID(t *testing.T, open env) {
	s, b := newStore(t, open)
	taken := newJob()
	taken.UUID, taken.RequestID = uuid.New(), "other"
	create(t, s, taken)
	u2, u3 := uuid.New(), uuid.New()
	wantOutcomes(t, applyBus(t, s, busStart("s2", u2), busStart("s3", u3)), jobs.BusParked, jobs.BusParked)
	n1, n2, n3 := newJob(), newJob(), newJob()
	n1.UUID, n1.RequestID = taken.UUID, "shared"
	n2.UUID, n2.RequestID = u2, "shared"
	n3.UUID, n3.RequestID = u3, "shared"
	rs := applyBus(t, s, busTrigger("t1", n1), busTrigger("t2", n2), busTrigger("t3", n3))
	// t1 names a uuid another request took; t3 names another uuid than the job its request id
	// made: neither is a repeat, both are conflicts.
	wantOutcomes(t, rs, jobs.BusRejected, jobs.BusApplied, jobs.BusRejected)
	if j, _ := b.Job(context.Background(), u2); j.State != statemachine.Running {
		t.Errorf("job %s: got %s, want RUNNING (its parked start applied)", u2, j.State)
	}
	if rs[2].Reason != storage.RejectConflict {
		t.Errorf("trigger t3: got reason %s, want conflict", rs[2].Reason)
	}
	expired, err := s.ExpireParked(context.Background(), 0, 10)
	if err != nil || len(expired) != 1 || *expired[0].JobUUID != u3 {
		t.Errorf("got %d still parked (%v), want only the start for %s", len(expired), err, u3)
	}
}

// testRefusedCreatesLeaveParkedEvents: the events parked for a uuid wait for the create that
// makes its job, whatever creates naming that uuid were refused or not applied before it (a
// unit takes them and parks again what it did not apply).
func testRefusedCreatesLeaveParked(t *testing.T, open env) {
	s, b := newStore(t, open)
	ctx := context.Background()
	other := newJob()
	other.RequestID = "taken"
	made := create(t, s, other)
	id := uuid.New()
	wantOutcomes(t, applyBus(t, s, busStart("s", id), busEnd("e", id, statemachine.Crashed, statemachine.CauseTask)),
		jobs.BusParked, jobs.BusParked)

	n := newJob()
	n.UUID, n.RequestID = id, "taken" // over HTTP: the request id made another job
	if _, err := s.Create(ctx, n, httpMeta("refused")); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("create with a taken request id: got %v, want ErrConflict", err)
	}
	// Over the bus, the same refused trigger, and a trigger seen before (a duplicate), in one
	// batch with a message for another job.
	seen := newJob()
	seen.UUID, seen.RequestID = id, "fresh"
	applyBus(t, s, busTrigger("t-seen", newJob()))
	rs := applyBus(t, s, busTrigger("t-refused", n), busTrigger("t-seen", seen), busEnd("e-other", made.UUID, statemachine.Finished, ""))
	wantOutcomes(t, rs, jobs.BusRejected, jobs.BusDuplicate, jobs.BusApplied)
	if _, err := b.Job(ctx, id); err == nil {
		t.Fatal("a refused or duplicate trigger created the job")
	}

	n.RequestID = "fresh"
	res, err := s.Create(ctx, n, httpMeta("made"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.State != statemachine.Crashed || len(res.Parked) != 2 {
		t.Fatalf("got state %s with %d parked events applied, want CRASHED with 2", res.Job.State, len(res.Parked))
	}
	if p := res.Parked; p[0].Meta.MessageID != "s" || p[1].Meta.MessageID != "e" {
		t.Errorf("got parked events %s, %s applied, want s, e", p[0].Meta.MessageID, p[1].Meta.MessageID)
	}
	if expired, err := s.ExpireParked(ctx, 0, 100); err != nil || len(expired) != 0 {
		t.Errorf("expire after create: got %d, %v; want none", len(expired), err)
	}
}
