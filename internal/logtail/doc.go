// Package logtail follows deploy logs while they are written: a Hub that the writer of a
// log tells of every line and of its end, and Follow, which reads a JSON-lines file from
// an offset and waits on the Hub (never on a timer faster than needed) for what comes next,
// until the caller says the log is finished.
//
// The agent owns one Hub; its deploy logger writes through Hub.Writer, and the status page
// and the admin API's log stream both read through Follow. Nothing here knows what a deploy
// is: keys are opaque strings (deploy ids) and "finished" is a func.
package logtail
