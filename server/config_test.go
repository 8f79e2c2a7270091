package server

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/command"
)

func TestRescheduleDelaySetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, 30 * time.Second},
		{nil, map[string]string{"EXECDB_RESCHEDULE_DELAY": "2m"}, 2 * time.Minute},
		{[]string{"--reschedule-delay", "5s"}, map[string]string{"EXECDB_RESCHEDULE_DELAY": "2m"}, 5 * time.Second},
	} {
		var stderr bytes.Buffer
		e := command.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(k string) string { return tc.env[k] }}
		cfg, err := parseConfig("serve", serveSynopsis, tc.args, e)
		if err != nil || cfg.RescheduleDelay != tc.want {
			t.Errorf("%v %v: got %s (%v %s), want %s", tc.args, tc.env, cfg.RescheduleDelay, err, stderr.String(), tc.want)
		}
	}
	var stderr bytes.Buffer
	e := command.Env{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}
	if _, err := parseConfig("serve", serveSynopsis, []string{"--reschedule-delay", "0s"}, e); err == nil {
		t.Error("--reschedule-delay 0s: accepted, want a usage error")
	}
	var stdout bytes.Buffer
	e = command.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	parseConfig("serve", serveSynopsis, []string{"--help"}, e)
	if !strings.Contains(stdout.String(), "--reschedule-delay") || !strings.Contains(stdout.String(), "EXECDB_RESCHEDULE_DELAY") {
		t.Errorf("serve --help does not document the setting:\n%s", stdout.String())
	}
}
