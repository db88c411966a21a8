// Package syncbuf is a bytes.Buffer that one goroutine may write while another reads it:
// the output of a child process or a logger, read by a test or a harness while it runs.
package syncbuf
