// Command etcd is upstream etcd's server main (go.etcd.io/etcd/server/v3/main.go),
// built from the module proxy at the version pinned in hack/versions.env.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
