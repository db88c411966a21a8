package hooks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const (
	shaA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246" // the commit in the documented examples
	shaB = "d70c5c6fa638e4a1fa8c1d5a1ef0e4b5c4f1c0de"
)

func TestParsePush(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		want    Push
		wantMsg string // a refusal (400) containing this, instead of want
	}{
		{name: "documented branch creation", payload: readTestdata(t, "push.json"), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/heads/master", Branch: "master",
			Before: zeroSHA, After: shaA, Created: true, Pusher: "Codertocat", HeadMessage: "Initial commit",
		}},
		{name: "documented tag deletion", payload: readTestdata(t, "push-tag-deleted.json"), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/tags/simple-tag", Tag: "simple-tag",
			Before: shaA, After: zeroSHA, Deleted: true, Pusher: "Codertocat",
		}},
		{name: "branch push, forced, multi-line message", payload: derivePush(t, map[string]any{
			"ref": "refs/heads/deploy-production", "before": shaB, "created": false, "forced": true,
			"head_commit.message": "Fix the thing\r\n\nLong explanation.",
		}), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/heads/deploy-production", Branch: "deploy-production",
			Before: shaB, After: shaA, Forced: true, Pusher: "Codertocat", HeadMessage: "Fix the thing",
		}},
		{name: "branch deletion by zero after, flag unset", payload: derivePush(t, map[string]any{
			"before": shaA, "after": zeroSHA, "created": false, "deleted": false, "head_commit": nil,
		}), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/heads/master", Branch: "master",
			Before: shaA, After: zeroSHA, Deleted: true, Pusher: "Codertocat",
		}},
		{name: "tag creation", payload: derivePush(t, map[string]any{"ref": "refs/tags/v1.2.3"}), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/tags/v1.2.3", Tag: "v1.2.3",
			Before: zeroSHA, After: shaA, Created: true, Pusher: "Codertocat", HeadMessage: "Initial commit",
		}},
		{name: "other ref", payload: derivePush(t, map[string]any{"ref": "refs/notes/commits"}), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/notes/commits",
			Before: zeroSHA, After: shaA, Created: true, Pusher: "Codertocat", HeadMessage: "Initial commit",
		}},
		{name: "upper-case sha is lowered", payload: derivePush(t, map[string]any{"after": strings.ToUpper(shaA)}), want: Push{
			Repo: "Codertocat/Hello-World", Ref: "refs/heads/master", Branch: "master",
			Before: zeroSHA, After: shaA, Created: true, Pusher: "Codertocat", HeadMessage: "Initial commit",
		}},

		{name: "bad after", payload: derivePush(t, map[string]any{"after": "xyz"}), wantMsg: `after: must be 40 hex digits, got "xyz"`},
		{name: "sha-256 after", payload: derivePush(t, map[string]any{"after": strings.Repeat("a", 64)}), wantMsg: "after: must be 40 hex digits"},
		{name: "missing after", payload: derivePush(t, map[string]any{"after": nil}), wantMsg: "after: missing"},
		{name: "bad before", payload: derivePush(t, map[string]any{"before": shaA[:39] + "g"}), wantMsg: "before: must be 40 hex digits"},
		{name: "missing full_name", payload: derivePush(t, map[string]any{"repository.full_name": nil}), wantMsg: "repository.full_name: missing"},
		{name: "missing repository", payload: derivePush(t, map[string]any{"repository": nil}), wantMsg: "repository.full_name: missing"},
		{name: "missing ref", payload: derivePush(t, map[string]any{"ref": nil}), wantMsg: "ref: missing"},
		{name: "short ref", payload: derivePush(t, map[string]any{"ref": "master"}), wantMsg: `ref: must be a full ref like refs/heads/main, got "master"`},
		{name: "ref with newline", payload: derivePush(t, map[string]any{"ref": "refs/heads/a\nb"}), wantMsg: "ref: contains white space"},
		{name: "ping is not a push", payload: readTestdata(t, "ping.json"), wantMsg: "ref: missing"},
		{name: "wrong type", payload: derivePush(t, map[string]any{"created": "yes"}), wantMsg: "body: not a push event"},
		{name: "not an object", payload: []byte(`[]`), wantMsg: "body: not a push event"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePush(tc.payload)
			if tc.wantMsg != "" {
				if err == nil {
					t.Fatalf("got %+v, want refusal %q", got, tc.wantMsg)
				}
				e := asError(t, err)
				if e.Status != 400 || !strings.Contains(e.Msg, tc.wantMsg) {
					t.Errorf("got %d %q, want 400 containing %q", e.Status, e.Msg, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %+v", err, tc.want)
			}
			if *got != tc.want {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestPushPayload(t *testing.T) {
	when := time.Date(2026, 11, 23, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	cases := []struct {
		name string
		in   PushInput
		want Push
	}{
		{name: "branch update",
			in: PushInput{Repo: "acme/web", Ref: "refs/heads/deploy-production", Before: shaB, After: shaA,
				Pusher: "deploy", HeadMessage: "Release 42\n\nDetails.", HeadTime: when},
			want: Push{Repo: "acme/web", Ref: "refs/heads/deploy-production", Branch: "deploy-production",
				Before: shaB, After: shaA, Pusher: "deploy", HeadMessage: "Release 42"}},
		{name: "branch creation",
			in:   PushInput{Repo: "acme/web", Ref: "refs/heads/main", Before: zeroSHA, After: strings.ToUpper(shaA)},
			want: Push{Repo: "acme/web", Ref: "refs/heads/main", Branch: "main", Before: zeroSHA, After: shaA, Created: true}},
		{name: "branch deletion",
			in:   PushInput{Repo: "acme/web", Ref: "refs/heads/old", Before: shaA, After: zeroSHA, Pusher: "ann", HeadMessage: "ignored"},
			want: Push{Repo: "acme/web", Ref: "refs/heads/old", Branch: "old", Before: shaA, After: zeroSHA, Deleted: true, Pusher: "ann"}},
		{name: "tag",
			in:   PushInput{Repo: "acme/web", Ref: "refs/tags/v1", Before: zeroSHA, After: shaA, HeadMessage: "v1"},
			want: Push{Repo: "acme/web", Ref: "refs/tags/v1", Tag: "v1", Before: zeroSHA, After: shaA, Created: true, HeadMessage: "v1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := PushPayload(tc.in)
			if err != nil {
				t.Fatalf("got error %v, want payload", err)
			}
			got, err := ParsePush(b)
			if err != nil {
				t.Fatalf("parse own payload %s: %v", b, err)
			}
			if *got != tc.want {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}

			// The fields GitHub always sends are present even when empty or false.
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"ref", "before", "after", "created", "deleted", "forced", "compare", "commits", "head_commit", "repository", "pusher"} {
				if _, ok := doc[k]; !ok {
					t.Errorf("got no %q in %s, want it", k, b)
				}
			}
			if c, ok := doc["commits"].([]any); !ok || len(c) != 0 {
				t.Errorf("got commits %v, want []", doc["commits"])
			}
			owner := doc["repository"].(map[string]any)["owner"].(map[string]any)
			if owner["name"] != "acme" || owner["login"] != "acme" || doc["repository"].(map[string]any)["name"] != "web" {
				t.Errorf("got repository %v, want name web, owner acme", doc["repository"])
			}
			head, _ := doc["head_commit"].(map[string]any)
			if tc.want.Deleted != (head == nil) {
				t.Errorf("got head_commit %v with deleted %v, want null exactly when deleted", doc["head_commit"], tc.want.Deleted)
			}
			if ts, want := head["timestamp"], "2026-11-23T10:00:00+01:00"; !tc.in.HeadTime.IsZero() && ts != want {
				t.Errorf("got timestamp %v, want %s", ts, want)
			}
		})
	}
}

func TestPushPayload_Refusals(t *testing.T) {
	good := PushInput{Repo: "acme/web", Ref: "refs/heads/main", Before: shaB, After: shaA}
	cases := []struct {
		name    string
		edit    func(*PushInput)
		wantMsg string
	}{
		{"repo without owner", func(in *PushInput) { in.Repo = "web" }, `repo: must be owner/name, got "web"`},
		{"repo with three parts", func(in *PushInput) { in.Repo = "a/b/c" }, "repo: must be owner/name"},
		{"empty owner", func(in *PushInput) { in.Repo = "/web" }, "repo: must be owner/name"},
		{"short ref", func(in *PushInput) { in.Ref = "main" }, "ref: must be a full ref"},
		{"bad before", func(in *PushInput) { in.Before = "abc" }, `before: must be 40 hex digits, got "abc"`},
		{"missing after", func(in *PushInput) { in.After = "" }, "after: missing"},
		{"both zero", func(in *PushInput) { in.Before, in.After = zeroSHA, zeroSHA }, "before and after are both all zeros"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.edit(&in)
			b, err := PushPayload(in)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("got %s, %v, want error containing %q", b, err, tc.wantMsg)
			}
		})
	}
}
