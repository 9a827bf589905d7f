// Command coredns is CoreDNS (github.com/coredns/coredns, pinned by this
// directory's go.mod) with only the plugins a test cluster's DNS uses: the
// kubernetes plugin and the usual ones of a kube-dns Corefile. Linking every
// plugin, as CoreDNS's own main does, would add every cloud provider's SDK to
// the build for nothing.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
