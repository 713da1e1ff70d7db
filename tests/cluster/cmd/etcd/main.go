// Thin wrapper around etcd's server entrypoint. `go install
// go.etcd.io/etcd/server/v3` does not work because etcd's go.mod files carry
// replace directives; building etcdmain from this module sidesteps that and
// keeps etcd on the same version k8s.io/kubernetes requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
