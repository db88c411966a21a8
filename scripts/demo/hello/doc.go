// Command hello is the sample app `make demo` deploys: it answers / with the version in the
// VERSION file of its release (and $GREETING, from its configuration in etcd, when set) and
// /health with ok, on 127.0.0.1:$PORT; any other path is 404, so a release whose health
// check asks for another path never becomes healthy. A $DB_URL that is set but not a
// postgres:// URL makes /health answer 503, as an app given a mistyped setting would: the
// demo and the tests use it to show a bad configuration change being reverted.
package main
