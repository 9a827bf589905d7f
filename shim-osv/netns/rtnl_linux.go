package netns

// The few rtnetlink messages the shim sends, written out by hand: the
// links, addresses and routes Discover reads, and the tap and tc objects
// Wire makes and Unwire removes (ip-link(8), ip-address(8), ip-route(8) and
// tc(8) send the same). A netlink library would carry every link kind,
// qdisc, filter and action the kernel has (vishvananda/netlink was 0.6 MB
// of the shim's binary) for these nine messages, whose format is the
// kernel's stable ABI.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errDumpInterrupted says the kernel's table changed during a dump; the
// caller retries.
var errDumpInterrupted = errors.New("netlink dump interrupted")

// Constants of linux/pkt_sched.h, linux/pkt_cls.h and linux/tc_act/tc_mirred.h
// that x/sys/unix does not have.
const (
	tcHIngress     = 0xfffffff1 // TC_H_INGRESS: the ingress qdisc's parent
	ingressHandle  = 0xffff0000 // "ffff:", the ingress qdisc's handle
	tcaU32Sel      = 5          // TCA_U32_SEL
	tcaU32Act      = 7          // TCA_U32_ACT
	tcU32Terminal  = 1          // TC_U32_TERMINAL
	tcaActKind     = 1          // TCA_ACT_KIND
	tcaActOptions  = 2          // TCA_ACT_OPTIONS
	tcaMirredParms = 2          // TCA_MIRRED_PARMS
	tcActStolen    = 4          // TC_ACT_STOLEN
	tcaEgressRedir = 1          // TCA_EGRESS_REDIR
)

// rtnl is a NETLINK_ROUTE socket in the calling thread's network
// namespace (the namespace a netlink socket talks to is the one it was
// made in).
type rtnl struct {
	fd  int
	seq uint32
}

func dialRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

func (c *rtnl) close() { unix.Close(c.fd) }

// withRtnl runs fn with a netlink socket made in the calling thread.
func withRtnl(fn func(c *rtnl) error) error {
	c, err := dialRtnl()
	if err != nil {
		return err
	}
	defer c.close()
	return fn(c)
}

// request sends one request (NLM_F_REQUEST|NLM_F_ACK|flags) and returns the
// payloads of the replies before the kernel's acknowledgement, or the
// errno the kernel answered with.
func (c *rtnl) request(typ, flags uint16, body []byte) ([][]byte, error) {
	return c.exchange(typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags, body)
}

// dump sends a dump request and returns the payloads of its messages; an
// interrupted dump gives errDumpInterrupted.
func (c *rtnl) dump(typ uint16, body []byte) ([][]byte, error) {
	return c.exchange(typ, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, body)
}

func (c *rtnl) exchange(typ, flags uint16, body []byte) ([][]byte, error) {
	c.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	msg = append(msg, body...)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags)
	ne.PutUint32(msg[8:], c.seq)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var out [][]byte
	interrupted := false
	buf := make([]byte, os.Getpagesize()*4)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if len(m.Data) >= 4 {
					if e := int32(ne.Uint32(m.Data)); e < 0 {
						return nil, syscall.Errno(-e)
					}
				}
				if interrupted {
					return out, errDumpInterrupted
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("netlink: short error message")
				}
				if e := int32(ne.Uint32(m.Data)); e < 0 {
					return nil, syscall.Errno(-e)
				}
				return out, nil // the acknowledgement
			default:
				out = append(out, slices.Clone(m.Data))
			}
		}
	}
}

// attrs builds netlink attributes (struct rtattr, 4-byte aligned).
type attrs []byte

func (a *attrs) add(typ uint16, data []byte) {
	n := unix.SizeofRtAttr + len(data)
	hdr := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(hdr[0:], uint16(n))
	binary.NativeEndian.PutUint16(hdr[2:], typ)
	*a = append(*a, hdr...)
	*a = append(*a, data...)
	*a = append(*a, make([]byte, rtaAlign(n)-n)...)
}

func (a *attrs) addString(typ uint16, s string) { a.add(typ, append([]byte(s), 0)) }
func (a *attrs) addU32(typ uint16, v uint32)    { a.add(typ, binary.NativeEndian.AppendUint32(nil, v)) }

// nest adds an attribute holding the attributes fn adds (as iproute2's
// addattr_nest, without NLA_F_NESTED, which these tc attributes predate).
func (a *attrs) nest(typ uint16, fn func(*attrs)) {
	var inner attrs
	fn(&inner)
	a.add(typ, inner)
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

// parseAttrs splits b into attributes by type (the last one of a type
// wins; the nested flag is masked off).
func parseAttrs(b []byte) map[uint16][]byte {
	out := map[uint16][]byte{}
	for len(b) >= unix.SizeofRtAttr {
		n := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < unix.SizeofRtAttr || n > len(b) {
			break
		}
		out[typ] = b[unix.SizeofRtAttr:n]
		if rtaAlign(n) >= len(b) {
			break
		}
		b = b[rtaAlign(n):]
	}
	return out
}

func attrString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func attrU32(b []byte) (uint32, bool) {
	if len(b) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(b), true
}

// structBytes returns the bytes of a fixed-size kernel struct.
func structBytes[T any](v *T) []byte {
	return slices.Clone(unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)))
}

// structFrom reads a fixed-size kernel struct from the front of b.
func structFrom[T any](b []byte) (T, bool) {
	var v T
	if len(b) < int(unsafe.Sizeof(v)) {
		return v, false
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v)), b)
	return v, true
}

// link is what the shim reads of a network interface.
type link struct {
	Index int
	Name  string
	Flags uint32 // IFF_*
	MTU   int
	MAC   net.HardwareAddr
	// Kind is the link kind of IFLA_INFO_KIND ("tun", "veth"), "" for a
	// device without one.
	Kind string
}

func parseLink(b []byte) (link, error) {
	ifi, ok := structFrom[unix.IfInfomsg](b)
	if !ok {
		return link{}, fmt.Errorf("netlink: short link message")
	}
	a := parseAttrs(b[unix.SizeofIfInfomsg:])
	l := link{Index: int(ifi.Index), Flags: ifi.Flags, Name: attrString(a[unix.IFLA_IFNAME])}
	if mtu, ok := attrU32(a[unix.IFLA_MTU]); ok {
		l.MTU = int(mtu)
	}
	if mac := a[unix.IFLA_ADDRESS]; len(mac) > 0 {
		l.MAC = slices.Clone(net.HardwareAddr(mac))
	}
	if info, ok := a[unix.IFLA_LINKINFO]; ok {
		l.Kind = attrString(parseAttrs(info)[unix.IFLA_INFO_KIND])
	}
	return l, nil
}

// errLinkNotFound is the error of linkByName for a name no link has.
var errLinkNotFound = errors.New("link not found")

func (c *rtnl) links() ([]link, error) {
	msgs, err := c.dump(unix.RTM_GETLINK, structBytes(&unix.IfInfomsg{Family: unix.AF_UNSPEC}))
	if err != nil {
		return nil, err
	}
	out := make([]link, 0, len(msgs))
	for _, m := range msgs {
		l, err := parseLink(m)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// linkByName returns the link called name; errLinkNotFound if none is.
func (c *rtnl) linkByName(name string) (link, error) {
	body := attrs(structBytes(&unix.IfInfomsg{Family: unix.AF_UNSPEC}))
	body.addString(unix.IFLA_IFNAME, name)
	msgs, err := c.request(unix.RTM_GETLINK, 0, body)
	if errors.Is(err, unix.ENODEV) {
		return link{}, fmt.Errorf("%s: %w", name, errLinkNotFound)
	}
	if err != nil {
		return link{}, err
	}
	if len(msgs) == 0 {
		return link{}, fmt.Errorf("netlink: no answer for link %s", name)
	}
	return parseLink(msgs[0])
}

// setMTU sets a link's MTU (RTM_SETLINK, as `ip link set mtu`).
func (c *rtnl) setMTU(index, mtu int) error {
	body := attrs(structBytes(&unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index)}))
	body.addU32(unix.IFLA_MTU, uint32(mtu))
	_, err := c.request(unix.RTM_SETLINK, 0, body)
	return err
}

// setUp brings a link up.
func (c *rtnl) setUp(index int) error {
	_, err := c.request(unix.RTM_NEWLINK, 0, structBytes(&unix.IfInfomsg{
		Family: unix.AF_UNSPEC, Index: int32(index), Flags: unix.IFF_UP, Change: unix.IFF_UP,
	}))
	return err
}

// deleteLink deletes a link.
func (c *rtnl) deleteLink(index int) error {
	_, err := c.request(unix.RTM_DELLINK, 0, structBytes(&unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index)}))
	return err
}

// addr is an interface address.
type addr struct {
	Index int
	IP    net.IP
	Mask  net.IPMask
}

// addrs4 returns the IPv4 addresses of link index, in the kernel's order.
func (c *rtnl) addrs4(index int) ([]addr, error) {
	msgs, err := c.dump(unix.RTM_GETADDR, structBytes(&unix.IfAddrmsg{Family: unix.AF_INET}))
	if err != nil {
		return nil, err
	}
	var out []addr
	for _, m := range msgs {
		ifa, ok := structFrom[unix.IfAddrmsg](m)
		if !ok {
			return nil, fmt.Errorf("netlink: short address message")
		}
		if ifa.Family != unix.AF_INET || int(ifa.Index) != index {
			continue
		}
		a := parseAttrs(m[unix.SizeofIfAddrmsg:])
		ip := a[unix.IFA_LOCAL] // the address itself; IFA_ADDRESS is the peer's on a point-to-point link
		if len(ip) != 4 {
			ip = a[unix.IFA_ADDRESS]
		}
		if len(ip) != 4 {
			continue
		}
		out = append(out, addr{Index: index, IP: slices.Clone(net.IP(ip)), Mask: net.CIDRMask(int(ifa.Prefixlen), 32)})
	}
	return out, nil
}

// route is an IPv4 route of the main table.
type route struct {
	DstLen   int
	Dst      net.IP // nil for a default route
	Gw       net.IP
	Priority int
	// OIF is the route's output interface, 0 for a multipath route.
	OIF int
	// Hops are a multipath route's next hops.
	Hops []hop
}

// hop is one next hop of a multipath route.
type hop struct {
	Index int
	Gw    net.IP
}

// routes4 returns the IPv4 routes of the main table (not the cached ones).
func (c *rtnl) routes4() ([]route, error) {
	msgs, err := c.dump(unix.RTM_GETROUTE, structBytes(&unix.RtMsg{Family: unix.AF_INET}))
	if err != nil {
		return nil, err
	}
	var out []route
	for _, m := range msgs {
		rtm, ok := structFrom[unix.RtMsg](m)
		if !ok {
			return nil, fmt.Errorf("netlink: short route message")
		}
		a := parseAttrs(m[unix.SizeofRtMsg:])
		table := uint32(rtm.Table)
		if t, ok := attrU32(a[unix.RTA_TABLE]); ok {
			table = t
		}
		if rtm.Family != unix.AF_INET || rtm.Flags&unix.RTM_F_CLONED != 0 || table != unix.RT_TABLE_MAIN {
			continue
		}
		r := route{DstLen: int(rtm.Dst_len)}
		if d := a[unix.RTA_DST]; len(d) == 4 {
			r.Dst = slices.Clone(net.IP(d))
		}
		if g := a[unix.RTA_GATEWAY]; len(g) == 4 {
			r.Gw = slices.Clone(net.IP(g))
		}
		if p, ok := attrU32(a[unix.RTA_PRIORITY]); ok {
			r.Priority = int(p)
		}
		if o, ok := attrU32(a[unix.RTA_OIF]); ok {
			r.OIF = int(o)
		}
		for mp := a[unix.RTA_MULTIPATH]; len(mp) >= unix.SizeofRtNexthop; {
			nh, _ := structFrom[unix.RtNexthop](mp)
			n := int(nh.Len)
			if n < unix.SizeofRtNexthop || n > len(mp) {
				break
			}
			h := hop{Index: int(nh.Ifindex)}
			if g := parseAttrs(mp[unix.SizeofRtNexthop:n])[unix.RTA_GATEWAY]; len(g) == 4 {
				h.Gw = slices.Clone(net.IP(g))
			}
			r.Hops = append(r.Hops, h)
			if rtaAlign(n) >= len(mp) {
				break
			}
			mp = mp[rtaAlign(n):]
		}
		out = append(out, r)
	}
	return out, nil
}

// tcmsg is struct tcmsg.
type tcmsg struct {
	Family  uint8
	_       [3]uint8
	Ifindex int32
	Handle  uint32
	Parent  uint32
	Info    uint32
}

// addIngressQdisc adds an ingress qdisc to link index (as `tc qdisc add
// dev DEV ingress`); one already there is EEXIST.
func (c *rtnl) addIngressQdisc(index int) error {
	body := attrs(structBytes(&tcmsg{Ifindex: int32(index), Handle: ingressHandle, Parent: tcHIngress}))
	body.addString(unix.TCA_KIND, "ingress")
	body.add(unix.TCA_OPTIONS, nil)
	_, err := c.request(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	return err
}

// qdisc is one queueing discipline of a link.
type qdisc struct {
	Index          int
	Handle, Parent uint32
	Kind           string
}

// qdiscs returns link index's qdiscs.
func (c *rtnl) qdiscs(index int) ([]qdisc, error) {
	msgs, err := c.dump(unix.RTM_GETQDISC, structBytes(&tcmsg{Ifindex: int32(index)}))
	if err != nil {
		return nil, err
	}
	var out []qdisc
	for _, m := range msgs {
		t, ok := structFrom[tcmsg](m)
		if !ok {
			return nil, fmt.Errorf("netlink: short qdisc message")
		}
		if int(t.Ifindex) != index {
			continue
		}
		kind := attrString(parseAttrs(m[unsafe.Sizeof(t):])[unix.TCA_KIND])
		out = append(out, qdisc{Index: index, Handle: t.Handle, Parent: t.Parent, Kind: kind})
	}
	return out, nil
}

// deleteQdisc deletes a qdisc.
func (c *rtnl) deleteQdisc(q qdisc) error {
	_, err := c.request(unix.RTM_DELQDISC, 0, structBytes(&tcmsg{Ifindex: int32(q.Index), Handle: q.Handle, Parent: q.Parent}))
	return err
}

// tcU32Sel is struct tc_u32_sel with one struct tc_u32_key.
type tcU32Sel struct {
	Flags    uint8
	Offshift uint8
	Nkeys    uint8
	_        uint8
	Offmask  uint16
	Off      uint16
	Offoff   int16
	Hoff     int16
	Hmask    uint32
	Key      struct {
		Mask, Val    uint32
		Off, Offmask int32
	}
}

// tcMirred is struct tc_mirred.
type tcMirred struct {
	Index, Capab            uint32
	Action, Refcnt, Bindcnt int32
	Eaction                 int32
	Ifindex                 uint32
}

// addRedirectFilter adds to the ingress qdisc of link from a u32 filter
// matching every frame (one key, mask 0) whose action is a mirred egress
// redirect to link to: `tc filter add dev FROM parent ffff: protocol all
// u32 match u32 0 0 action mirred egress redirect dev TO`.
func (c *rtnl) addRedirectFilter(from, to int) error {
	_, err := c.request(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL, redirectFilterBody(from, to))
	return err
}

// redirectFilterBody is the RTM_NEWTFILTER message of addRedirectFilter.
func redirectFilterBody(from, to int) []byte {
	proto := uint32(unix.ETH_P_ALL)
	body := attrs(structBytes(&tcmsg{
		Ifindex: int32(from),
		Parent:  ingressHandle,
		Info:    proto>>8 | (proto&0xff)<<8, // priority 0 (the kernel picks one), the protocol in network order
	}))
	body.addString(unix.TCA_KIND, "u32")
	body.nest(unix.TCA_OPTIONS, func(o *attrs) {
		o.add(tcaU32Sel, structBytes(&tcU32Sel{Flags: tcU32Terminal, Nkeys: 1}))
		o.nest(tcaU32Act, func(acts *attrs) {
			acts.nest(1, func(act *attrs) { // the first action of the list
				act.addString(tcaActKind, "mirred")
				act.nest(tcaActOptions, func(p *attrs) {
					p.add(tcaMirredParms, structBytes(&tcMirred{
						Action: tcActStolen, Eaction: tcaEgressRedir, Ifindex: uint32(to),
					}))
				})
			})
		})
	})
	return body
}

// createTap creates a persistent tap device called name
// (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, one queue) owned by uid and gid 0, as
// `ip tuntap add NAME mode tap vnet_hdr` does.
func createTap(name string) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF: %w", err)
	}
	for _, op := range []struct {
		name string
		req  uint
		arg  int
	}{{"TUNSETOWNER", unix.TUNSETOWNER, 0}, {"TUNSETGROUP", unix.TUNSETGROUP, 0}, {"TUNSETPERSIST", unix.TUNSETPERSIST, 1}} {
		if err := unix.IoctlSetInt(fd, op.req, op.arg); err != nil {
			return fmt.Errorf("%s: %w", op.name, err)
		}
	}
	return nil
}
