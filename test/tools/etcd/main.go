// Command etcd is etcd's own server, built from the module proxy at the version
// this module pins; etcd's module cannot be "go install"ed (replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
