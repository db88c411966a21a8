package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(exe), "..", "VERSION"))
	if err != nil {
		log.Fatal(err)
	}
	version := strings.TrimSpace(string(data))
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	greeting := ""
	if g := os.Getenv("GREETING"); g != "" {
		greeting = " (greeting: " + g + ")"
	}
	dbURL, dbSet := os.LookupEnv("DB_URL")
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if dbSet && !strings.HasPrefix(dbURL, "postgres://") {
			http.Error(w, "DB_URL: want a postgres:// URL", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from version %s%s\n", version, greeting)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
