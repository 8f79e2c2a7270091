package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// TestReplayRejected: a start that waited in vain for its job (unknown_job) is replayed once the
// job exists: it applies, under the message id replay:<id> in the job's history with the actor;
// replaying it again is a duplicate. A message that still cannot be decoded is refused with the
// reason and nothing is stored.
func TestReplayRejected(t *testing.T) {
	cfg := api.Config{Tokens: map[string]api.Token{"adm": {Name: "ops", Scopes: []api.Scope{api.ScopeAdmin}},
		"trig": {Name: "trigger", Scopes: []api.Scope{api.ScopeTrigger}}}}
	forEachBackend(t, cfg, func(t *testing.T, c *client) {
		store := c.store
		id := uuid.New()
		prefix := store.TopicPrefix()
		msgs := []jobs.BusMessage{
			{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "orphan-start"}, Topic: prefix + ".taskotron.runtask.start",
				Body: []byte(fmt.Sprintf(`{"uuid":%q,"runner":{"name":"buildbot","jobid":"all/9"}}`, id)), JobUUID: id,
				Event: &statemachine.Event{Start: &statemachine.Start{Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/9"}}}},
			{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "garbage"}, Topic: prefix + ".taskotron.runtask.end",
				Body: []byte(`{"uuid":`), Reject: &jobs.Rejection{Reason: storage.RejectUndecodable}},
		}
		if _, err := store.ApplyBus(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
		if _, err := store.ExpireParked(context.Background(), -time.Second, 10); err != nil { // the start gives up on its job
			t.Fatal(err)
		}
		rejected, err := store.Rejected(context.Background(), storage.RejectedQuery{Limit: 10})
		if err != nil || len(rejected) != 2 {
			t.Fatalf("rejected: %d, %v", len(rejected), err)
		}
		byMsg := map[string]int64{}
		for _, r := range rejected {
			byMsg[r.MessageID] = r.ID
		}
		start := fmt.Sprintf("/api/v1/rejected/%d/replay", byMsg["orphan-start"])

		c.token = "trig"
		expectStatus(t, c.do("POST", start, ""), 403) // admin only
		c.create(fmt.Sprintf(`{"taskname":"rpmlint","item":"i","item_type":"k","uuid":%q}`, id))
		c.token = "adm"
		r := c.do("POST", start, "")
		expectStatus(t, r, 200)
		var got struct {
			Outcome   string            `json:"outcome"`
			MessageID string            `json:"message_id"`
			Job       *statemachine.Job `json:"job"`
		}
		json.Unmarshal(r.body, &got)
		if got.Outcome != "applied" || got.Job == nil || got.Job.State != statemachine.Running || got.Job.Runner.JobID != "all/9" {
			t.Fatalf("replay: got %s", r.body)
		}
		hist := c.do("GET", got.Job.Href()+"/events", "")
		if !strings.Contains(string(hist.body), `"message_id":"`+got.MessageID+`"`) || !strings.Contains(string(hist.body), `"actor":"ops"`) {
			t.Errorf("the replay is not in the job's history: %s", hist.body)
		}
		r = c.do("POST", start, "")
		expectStatus(t, r, 200)
		if !strings.Contains(string(r.body), `"outcome":"duplicate"`) {
			t.Errorf("second replay: got %s", r.body)
		}
		r = c.do("POST", fmt.Sprintf("/api/v1/rejected/%d/replay", byMsg["garbage"]), "")
		expectStatus(t, r, 409)
		if e := r.err(t); !strings.Contains(e.Error.Message, "still rejected") {
			t.Errorf("garbage: got %q", e.Error.Message)
		}
		expectStatus(t, c.do("POST", "/api/v1/rejected/999999/replay", ""), 404)
		expectStatus(t, c.do("POST", "/api/v1/rejected/x/replay", ""), 400)
		if again, _ := store.Rejected(context.Background(), storage.RejectedQuery{Limit: 10}); len(again) != 2 {
			t.Errorf("replays stored rejections: %d now", len(again))
		}
	})
}
