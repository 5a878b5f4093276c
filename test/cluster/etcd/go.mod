// Wrapper module: builds etcd from the Go module proxy (Debian's etcd is too old for recent Kubernetes).
module dbcred.dev/cluster/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
