package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/statemachine"
)

func TestSearchFollowsNext(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		created := map[string]bool{}
		for i := range 17 {
			job := c.create(fmt.Sprintf(`{"taskname":"rpmlint","item":"pkg%d","item_type":"koji_build"}`, i))
			created[job.UUID.String()] = true
			if i%2 == 0 {
				c.do("POST", job.Href()+"/finish", `{"state":"CRASHED","crash":{"cause":"minion","keyvals":{"step":"MINION_CREATION"}}}`)
			}
		}
		c.create(`{"taskname":"depcheck","item":"other","item_type":"koji_build"}`)
		path := "/api/v1/jobs?taskname=rpmlint&limit=7"
		seen, pages := 0, 0
		for path != "" {
			r := c.do("GET", path, "")
			expectStatus(t, r, 200)
			var page struct {
				Data []statemachine.Job `json:"data"`
				Next *string            `json:"next"`
			}
			if err := json.Unmarshal(r.body, &page); err != nil {
				t.Fatal(err)
			}
			for _, j := range page.Data {
				if !created[j.UUID.String()] {
					t.Errorf("got job %s (%s), not one of the rpmlint jobs or twice", j.UUID, j.TaskName)
				}
				delete(created, j.UUID.String())
				seen++
			}
			pages++
			path = ""
			if page.Next != nil {
				if !strings.HasPrefix(*page.Next, c.base+"/api/v1/jobs?") {
					t.Fatalf("next %q is not a URL on this server", *page.Next)
				}
				path = strings.TrimPrefix(*page.Next, c.base)
			}
		}
		if seen != 17 || pages != 3 {
			t.Errorf("got %d jobs in %d pages, want 17 in 3", seen, pages)
		}
		r := c.do("GET", "/api/v1/jobs?since=30d&limit=1", "")
		var one struct {
			Next *string `json:"next"`
		}
		json.Unmarshal(r.body, &one)
		if one.Next == nil || strings.Contains(*one.Next, "since=30d") || !strings.Contains(*one.Next, "since=20") {
			t.Errorf("next of a relative since: got %v, want the window fixed as an absolute since", one.Next)
		}
		r = c.do("GET", "/api/v1/stats?state=CRASHED&cause=minion&kv.step=MINION_CREATION&since=30d&group_by=kv.step,taskname", "")
		expectStatus(t, r, 200)
		var stats struct {
			Total int64 `json:"total"`
			Data  []struct {
				Group map[string]*string `json:"group"`
				Count int64              `json:"count"`
				Share float64            `json:"share"`
			} `json:"data"`
		}
		json.Unmarshal(r.body, &stats)
		if stats.Total != 9 || len(stats.Data) != 1 || stats.Data[0].Count != 9 || stats.Data[0].Share != 1 || *stats.Data[0].Group["taskname"] != "rpmlint" {
			t.Errorf("stats: got %s, want 9 rpmlint MINION_CREATION crashes", r.body)
		}
	})
}

func TestSearchBadParameters(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		cases := []struct{ path, field string }{
			{"/api/v1/jobs?colour=red", "colour"},
			{"/api/v1/jobs?limit=0", "limit"},
			{"/api/v1/jobs?limit=1001", "limit"},
			{"/api/v1/jobs?limit=ten", "limit"},
			{"/api/v1/jobs?after=garbage", "after"},
			{"/api/v1/jobs?state=DONE", "state"},
			{"/api/v1/jobs?state=", "state"},
			{"/api/v1/jobs?fatal=yes", "fatal"},
			{"/api/v1/jobs?cause:like=min*", "cause:like"},
			{"/api/v1/jobs?since=yesterday", "since"},
			{"/api/v1/jobs?until=2026-13-01", "until"},
			{"/api/v1/jobs?kv.bad%20key=x", "kv.bad key"},
			{"/api/v1/jobs?since=200000d", "since"},
			{"/api/v1/jobs?since=9999999999999999999w", "since"},
			{"/api/v1/jobs?item=" + strings.Repeat("a,", 100) + "a", "item"},
			{"/api/v1/stats?group_by=colour", "group_by"},
			{"/api/v1/stats?bucket=month", "bucket"},
			{"/api/v1/stats?limit=5", "limit"},
		}
		for _, tc := range cases {
			r := c.do("GET", tc.path, "")
			expectStatus(t, r, 400)
			if e := r.err(t); e.Error.Field != tc.field {
				t.Errorf("%s: got field %q (%s), want %q", tc.path, e.Error.Field, e.Error.Message, tc.field)
			}
		}
	})
}
