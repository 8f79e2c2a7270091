package schemas_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// The request ids of successors are in the namespace clients may not use, so a client can never
// take a successor's request id.
func TestSuccessorRequestIDsAreReserved(t *testing.T) {
	id := statemachine.SuccessorRequestID(uuid.New())
	if !strings.HasPrefix(id, schemas.ReservedRequestIDPrefix) {
		t.Fatalf("successor request id %q is outside the reserved prefix %q", id, schemas.ReservedRequestIDPrefix)
	}
	var fe *schemas.FieldError
	if err := schemas.CheckRequestID(id, "request_id"); !errors.As(err, &fe) || fe.Field != "request_id" {
		t.Errorf("got %v, want a field error on request_id", err)
	}
}

func TestDecodeTriggerLenientIgnoresUnknownFields(t *testing.T) {
	body := `{"taskname":"t","item":"i","item_type":"k","from_the_future":1}`
	if _, err := schemas.DecodeTrigger([]byte(body), schemas.Lenient); err != nil {
		t.Errorf("lenient: got %v, want the unknown field ignored", err)
	}
	_, err := schemas.DecodeTrigger([]byte(body), schemas.Strict)
	var fe *schemas.FieldError
	if !errors.As(err, &fe) || fe.Field != "from_the_future" {
		t.Errorf("strict: got %v, want a field error naming from_the_future", err)
	}
}

func TestKeyValsValuesBecomeStrings(t *testing.T) {
	kv, err := schemas.DecodeKeyVals([]byte(`{"n":3.5,"b":false,"l":["a",1,true],"empty":[]}`), "data")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(kv["n"], ",") + "|" + strings.Join(kv["b"], ",") + "|" + strings.Join(kv["l"], ","); got != "3.5|false|a,1,true" {
		t.Errorf("got %q, want 3.5|false|a,1,true", got)
	}
	if _, ok := kv["empty"]; ok {
		t.Error("a key without values was kept")
	}
}
