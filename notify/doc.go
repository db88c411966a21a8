// Package notify tells people about deploys: it posts events (a deploy started, succeeded,
// failed, was reverted or halted, a configuration was reverted) to notification targets,
// either Slack-compatible incoming webhooks or generic JSON webhooks signed with
// HMAC-SHA256 (X-Pushdeploy-Signature-256: sha256=<hex>).
//
// A target that is slow or down never holds up a deploy: Send only queues, each target has
// a bounded queue of its own and one goroutine that posts from it, retrying with backoff,
// and an event that finds its queue full or runs out of attempts is dropped with a log
// line. Messages carry the deploy's record, never a secret; logs name a target by its
// scheme and host only, since a Slack webhook URL's path is its secret.
package notify
