package etcdconn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	env := map[string]string{
		"ETCDCTL_ENDPOINTS":       " http://a:2379, http://b:2379 ,",
		"ETCDCTL_USER":            "root:pw",
		"ETCDCTL_COMMAND_TIMEOUT": "3s",
	}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Endpoints, " ") != "http://a:2379 http://b:2379" || c.Username != "root" || c.Password != "pw" || c.RequestTimeout != 3*time.Second {
		t.Errorf("got %+v", c)
	}
	for k, v := range map[string]string{"ETCDCTL_DIAL_TIMEOUT": "soon", "ETCDCTL_ENDPOINTS": " , "} {
		if _, err := FromEnv(func(n string) string {
			if n == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: got %v, want an error naming it", k, v, err)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		c    Config
		want string
	}{
		{Config{Endpoints: []string{"http://127.0.0.1:2379"}}, ""},
		{Config{Endpoints: []string{"127.0.0.1:2379"}}, ""},
		{Config{}, "endpoints: missing"},
		{Config{Endpoints: []string{"ftp://x"}}, `scheme "ftp"`},
		{Config{Endpoints: []string{"http://x"}, Cert: "c.pem"}, "cert and key: both or neither"},
		{Config{Endpoints: []string{"http://x"}, Password: "pw"}, "username: missing"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.c, err, tt.want)
		}
	}
	if CheckPrefix("/p/") != nil || CheckPrefix("") != nil || CheckPrefix("p/") == nil {
		t.Error("CheckPrefix: wrong verdicts")
	}
}

func TestUnavailable(t *testing.T) {
	if err := Unavailable(context.DeadlineExceeded); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: got %v", err)
	}
	if err := Unavailable(errors.New("permission denied")); errors.Is(err, ErrUnavailable) {
		t.Errorf("another error: got %v", err)
	}
	if Unavailable(nil) != nil {
		t.Error("nil: not nil")
	}
}
