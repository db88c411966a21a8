package etcdconn

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Op tells the OnRequest hook of one round trip of kind name ("get", "txn", "watch"…).
func (c *Conn) Op(name string) {
	if c.onRequest != nil {
		c.onRequest(name)
	}
}

// Get reads key (with opts) in one round trip bounded by the request timeout.
func (c *Conn) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, err := c.Client(ctx)
	if err != nil {
		return nil, err
	}
	c.Op("get")
	resp, err := cl.Get(ctx, key, opts...)
	return resp, c.Classify(err)
}

// Txn commits If(cmps).Then(then).Else(els) in one round trip bounded by the request
// timeout.
func (c *Conn) Txn(ctx context.Context, cmps []clientv3.Cmp, then []clientv3.Op, els ...clientv3.Op) (*clientv3.TxnResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, err := c.Client(ctx)
	if err != nil {
		return nil, err
	}
	c.Op("txn")
	resp, err := cl.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	return resp, c.Classify(err)
}

// Delete deletes key (with opts) in one round trip bounded by the request timeout.
func (c *Conn) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, err := c.Client(ctx)
	if err != nil {
		return nil, err
	}
	c.Op("delete")
	resp, err := cl.Delete(ctx, key, opts...)
	return resp, c.Classify(err)
}
