package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

func TestListRejected(t *testing.T) {
	b := testenv.SQLite(t, "")
	store := jobs.New(b, jobs.Config{})
	var msgs []jobs.BusMessage
	for i := range 5 {
		origin := statemachine.OriginAMQP
		if i == 4 {
			origin = statemachine.OriginFedmsg
		}
		body := []byte(fmt.Sprintf(`{"n":%d}`, i))
		if i == 0 {
			body = []byte{0xff, 0xfe}
		}
		msgs = append(msgs, jobs.BusMessage{Meta: statemachine.Meta{Origin: origin, MessageID: fmt.Sprint("m", i)},
			Topic: "org.example.taskotron.runtask.end", Body: body,
			Reject: &jobs.Rejection{Reason: storage.RejectSchema, Field: "crash.cause", Detail: "must be one of …"}})
	}
	if _, err := store.ApplyBus(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(store, api.Config{}).Handler())
	defer srv.Close()
	type page struct {
		Data []struct {
			ID         int64   `json:"id"`
			MessageID  string  `json:"message_id"`
			Transport  string  `json:"transport"`
			Reason     string  `json:"reason"`
			Field      string  `json:"field"`
			Body       *string `json:"body"`
			BodyBase64 string  `json:"body_base64"`
			BodySize   int     `json:"body_size"`
		} `json:"data"`
		Next  *string `json:"next"`
		Error struct {
			Field string `json:"field"`
		} `json:"error"`
	}
	get := func(path string, status int) page {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p page
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != status {
			t.Fatalf("GET %s: got %d, want %d", path, resp.StatusCode, status)
		}
		return p
	}
	p := get("/api/v1/rejected?limit=2", http.StatusOK)
	if len(p.Data) != 2 || p.Data[0].MessageID != "m4" || p.Data[1].MessageID != "m3" || p.Next == nil {
		t.Fatalf("first page: got %+v", p)
	}
	if d := p.Data[0]; d.Transport != "fedmsg" || d.Reason != "schema" || d.Field != "crash.cause" || d.Body == nil || *d.Body != `{"n":4}` {
		t.Errorf("got %+v", d)
	}
	p = get(*p.Next, http.StatusOK)
	if len(p.Data) != 2 || p.Data[0].MessageID != "m2" || p.Next == nil {
		t.Fatalf("second page: got %+v", p)
	}
	p = get(*p.Next, http.StatusOK)
	if len(p.Data) != 1 || p.Data[0].MessageID != "m0" || p.Next != nil || p.Data[0].Body != nil || p.Data[0].BodyBase64 != "//4=" {
		t.Fatalf("last page: got %+v", p)
	}
	if p := get("/api/v1/rejected?transport=fedmsg&reason=schema", http.StatusOK); len(p.Data) != 1 {
		t.Errorf("filtered: got %d, want 1", len(p.Data))
	}
	for path, field := range map[string]string{
		"/api/v1/rejected?limit=0": "limit", "/api/v1/rejected?limit=x": "limit", "/api/v1/rejected?before=-1": "before",
		"/api/v1/rejected?reason=bad": "reason", "/api/v1/rejected?transport=smtp": "transport", "/api/v1/rejected?page=2": "page",
	} {
		if p := get(path, http.StatusBadRequest); p.Error.Field != field {
			t.Errorf("GET %s: got field %q, want %q", path, p.Error.Field, field)
		}
	}
}
