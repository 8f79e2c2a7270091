package client_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/client/clienttest"
	"github.com/fedora-qa/execdb/statemachine"
)

// A job's life as a runner reports it: created by Trigger, started and finished by Buildbot.
func Example() {
	// The real API on a temporary SQLite database stands in for `execdb serve`. Without tokens
	// it takes writes from loopback, as here.
	srv, err := clienttest.Start(clienttest.Options{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	c, err := client.New(srv.URL, "")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	created, err := c.CreateJob(ctx, client.CreateJobRequest{TaskName: "rpmlint", Item: "foo-1.0-1.fc40", ItemType: "koji_build"})
	if err != nil {
		panic(err)
	}
	id := created.Job.UUID
	fmt.Println(created.Job.State, created.Created())

	started, err := c.StartJob(ctx, id, statemachine.Start{Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/4821"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(started.Job.State)

	finished, err := c.FinishJob(ctx, id, statemachine.End{State: statemachine.Finished})
	if err != nil {
		panic(err)
	}
	fmt.Println(finished.Job.State)

	// A report that disagrees with the recorded outcome is refused with the job as it stands.
	_, err = c.FinishJob(ctx, id, statemachine.End{State: statemachine.Crashed})
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Status, apiErr.Job.State)
	}
	// Output:
	// SCHEDULED true
	// RUNNING
	// FINISHED
	// 409 FINISHED
}
