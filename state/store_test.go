package state

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestStore_Accept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := Open(path, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	st.deliveryLimit = 3
	d := &Deploy{ID: newDeployID(time.Now()), App: "web", Status: StatusQueued}
	for i, want := range []bool{true, false} {
		fresh, err := st.Accept("web", "d-1", d)
		if err != nil || fresh != want {
			t.Fatalf("accept #%d: got %v (%v), want %v", i, fresh, err, want)
		}
	}
	if fresh, _ := st.Accept("api", "d-1", nil); !fresh {
		t.Error("the same delivery id for another app was taken as a duplicate")
	}
	// Beyond the limit the oldest ids are forgotten, the newest kept.
	for i := 2; i <= 5; i++ {
		st.Accept("web", fmt.Sprintf("d-%d", i), nil)
	}
	st.Close()
	st, err = Open(path, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.deliveryLimit = 3
	for id, wantSeen := range map[string]bool{"d-1": false, "d-5": true, "d-4": true} {
		fresh, _ := st.Accept("web", id, nil)
		if fresh == wantSeen {
			t.Errorf("delivery %s after reopen: got fresh=%v, want seen=%v", id, fresh, wantSeen)
		}
	}
	if got, err := st.Get("web", d.ID); err != nil || got.Status != StatusQueued {
		t.Errorf("deploy recorded with its delivery: got %+v, %v", got, err)
	}
}

func TestStore_Prune(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "state.db"), false, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	var ids []string
	for i := 0; i < 6; i++ {
		status := StatusSucceeded
		if i == 0 {
			status = StatusQueued // never pruned: it has not finished
		}
		d := &Deploy{ID: newDeployID(now.Add(time.Duration(i) * time.Second)), App: "web", Status: status}
		if err := st.Save(d); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	dropped, err := st.Prune("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 3 || dropped[0] != ids[1] {
		t.Errorf("dropped: got %v, want the 3 oldest finished (%v)", dropped, ids[1:4])
	}
	hist, _ := st.History("web", 0)
	if len(hist) != 3 || hist[0].ID != ids[5] || hist[2].ID != ids[0] {
		t.Errorf("history after prune: got %d deploys, want newest two and the unfinished one", len(hist))
	}
}

func TestIDs_Next(t *testing.T) {
	var g IDs
	now := time.Now()
	prev := ""
	for i := 0; i < 100; i++ {
		id := g.Next(now) // the same instant every time: ids must still sort in call order
		if id <= prev {
			t.Fatalf("id %d: got %s after %s, want a larger id", i, id, prev)
		}
		prev = id
	}
}
