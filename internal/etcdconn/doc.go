// Package etcdconn is the one way pushdeploy connects to etcd: endpoints, TLS, a user and
// password, dial and request timeouts, the ETCDCTL_* variables, a client created lazily
// (with auth, creating it logs in, which needs etcd), and errors that say when etcd could
// not be reached (ErrUnavailable), with the TLS problem when there is one. renv (the
// configuration documents) and fleet (hosts, slots, halts and locks) both open their
// clients through it.
package etcdconn
