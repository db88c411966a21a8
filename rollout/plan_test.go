package rollout

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/units"
)

func TestBatches(t *testing.T) {
	tests := []struct {
		name    string
		rollout string // service.json rollout of web
		n       int
		want    string
	}{
		{"default one at a time", `{}`, 3, "[1] [2] [3]"},
		{"count", `{"max_parallel": 2}`, 5, "[1 2] [3 4] [5]"},
		{"percentage rounds up", `{"max_parallel": "50%"}`, 3, "[1 2] [3]"},
		{"canary first", `{"max_parallel": 2, "canary": 1}`, 4, "[1] [2 3] [4]"},
		{"canary above max_parallel", `{"max_parallel": 2, "canary": 3}`, 6, "[1 2] [3] [4 5] [6]"},
		{"canary of every instance", `{"canary": 2}`, 2, "[1] [2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := units.Parse(fmt.Appendf(nil, `{"services": {"web": {"command": "bin/server", "instances": %d, "rollout": %s},
				"api": {"command": "bin/server", "instances": 2}}}`, tt.n, tt.rollout))
			if err != nil {
				t.Fatal(err)
			}
			got := Batches(spec, "shop")
			// Services go in order: api (one at a time, the default) before web.
			want := "[api1] [api2] " + tt.want
			if s := batchString(got); s != want {
				t.Errorf("got %s, want %s", s, want)
			}
		})
	}
}

// batchString shows batches compactly: [api1] for pushdeploy-shop-api@1.service, [1 2] for
// instances of web.
func batchString(batches [][]string) string {
	var out []string
	for _, b := range batches {
		var names []string
		for _, u := range b {
			u = strings.TrimSuffix(strings.TrimPrefix(u, "pushdeploy-shop-"), ".service")
			u = strings.Replace(strings.TrimPrefix(u, "web@"), "@", "", 1)
			names = append(names, u)
		}
		out = append(out, "["+strings.Join(names, " ")+"]")
	}
	return strings.Join(out, " ")
}
