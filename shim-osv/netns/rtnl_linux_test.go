package netns

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStructSizes checks the hand-declared kernel structs against the
// sizes of linux/rtnetlink.h, linux/pkt_cls.h and linux/tc_act/tc_mirred.h.
func TestStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"tcmsg", len(structBytes(&tcmsg{})), 20},
		{"tc_u32_sel with one key", len(structBytes(&tcU32Sel{})), 16 + 16},
		{"tc_mirred", len(structBytes(&tcMirred{})), 28},
	} {
		if tc.got != tc.want {
			t.Errorf("sizeof(%s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// attrBytes is one attribute.
func attrBytes(typ uint16, data []byte) []byte {
	var a attrs
	a.add(typ, data)
	return a
}

func TestAttrs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(a *attrs)
		hex   string
	}{
		{"string padded to 4", func(a *attrs) { a.addString(unix.IFLA_IFNAME, "eth0") }, "090003006574683000000000"},
		{"u32", func(a *attrs) { a.addU32(unix.IFLA_MTU, 1500) }, "08000400dc050000"},
		{"empty", func(a *attrs) { a.add(unix.TCA_OPTIONS, nil) }, "04000200"},
		{"nested", func(a *attrs) {
			a.nest(unix.TCA_OPTIONS, func(o *attrs) { o.addString(1, "ab") })
		}, "0c000200" + "0700010061620000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a attrs
			tc.build(&a)
			if got := hex.EncodeToString(a); got != tc.hex {
				t.Errorf("attrs = %s, want %s", got, tc.hex)
			}
		})
	}
}

func TestParseAttrs(t *testing.T) {
	var a attrs
	a.addString(unix.IFLA_IFNAME, "tap0")
	a.addU32(unix.IFLA_MTU, 9000)
	a.nest(unix.IFLA_LINKINFO|unix.NLA_F_NESTED, func(o *attrs) { o.addString(unix.IFLA_INFO_KIND, "tun") })
	a = append(a, 0xff, 0xff) // a truncated trailing attribute is ignored
	got := parseAttrs(a)
	if s := attrString(got[unix.IFLA_IFNAME]); s != "tap0" {
		t.Errorf("name %q", s)
	}
	if v, ok := attrU32(got[unix.IFLA_MTU]); !ok || v != 9000 {
		t.Errorf("mtu %d %v", v, ok)
	}
	if k := attrString(parseAttrs(got[unix.IFLA_LINKINFO])[unix.IFLA_INFO_KIND]); k != "tun" {
		t.Errorf("kind %q (the nested flag must be masked off)", k)
	}
}

func TestParseLink(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	body := attrs(structBytes(&unix.IfInfomsg{Index: 7, Flags: unix.IFF_UP | unix.IFF_BROADCAST}))
	body.add(unix.IFLA_ADDRESS, mac)
	body.addString(unix.IFLA_IFNAME, "eth0")
	body.addU32(unix.IFLA_MTU, 1450)
	body.nest(unix.IFLA_LINKINFO, func(o *attrs) { o.addString(unix.IFLA_INFO_KIND, "veth") })
	got, err := parseLink(body)
	if err != nil {
		t.Fatal(err)
	}
	want := link{Index: 7, Name: "eth0", Flags: unix.IFF_UP | unix.IFF_BROADCAST, MTU: 1450, MAC: mac, Kind: "veth"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseLink = %+v, want %+v", got, want)
	}
	if _, err := parseLink(body[:8]); err == nil {
		t.Error("short message parsed")
	}
}

// TestRedirectFilter checks the u32 + mirred filter message (ifindex 2 →
// 9) byte for byte: the structs as linux/pkt_cls.h and tc_mirred.h lay them
// out, nested as the kernel's u32 classifier and act_mirred parse them. That
// the kernel takes it and makes the redirect TestWireUnwire checks, reading
// the filter back through the netlink library.
func TestRedirectFilter(t *testing.T) {
	var sel tcU32Sel
	sel.Flags, sel.Nkeys = tcU32Terminal, 1
	var mirred tcMirred
	mirred.Action, mirred.Eaction, mirred.Ifindex = tcActStolen, tcaEgressRedir, 9
	want := attrs(structBytes(&tcmsg{Ifindex: 2, Parent: 0xffff0000, Info: 0x0300}))
	want.addString(unix.TCA_KIND, "u32")
	opts := attrBytes(tcaU32Sel, structBytes(&sel))
	act := append(attrBytes(tcaActKind, []byte("mirred\x00")), attrBytes(tcaActOptions, attrBytes(tcaMirredParms, structBytes(&mirred)))...)
	opts = append(opts, attrBytes(tcaU32Act, attrBytes(1, act))...)
	want.add(unix.TCA_OPTIONS, opts)

	// The same message as the kernel sees it: the mirred parameters at
	// their offsets.
	m := []byte(want)
	if binary.NativeEndian.Uint32(m[16:]) != 0x0300 {
		t.Fatalf("tcm_info %#x, want protocol ETH_P_ALL in network order", binary.NativeEndian.Uint32(m[16:]))
	}
	if got := hex.EncodeToString(structBytes(&mirred)); got != "0000000000000000040000000000000000000000"+"01000000"+"09000000" {
		t.Errorf("tc_mirred = %s", got)
	}
	if got := hex.EncodeToString(structBytes(&sel)); got != "0100010000000000000000000000000000000000000000000000000000000000" {
		t.Errorf("tc_u32_sel = %s", got)
	}
	got := redirectFilterBody(2, 9)
	if hex.EncodeToString(got) != hex.EncodeToString(want) {
		t.Errorf("filter message\n got %x\nwant %x", got, []byte(want))
	}
}

func TestDefaultGateway(t *testing.T) {
	gw1, gw2, gw3 := net.IPv4(10, 0, 0, 1).To4(), net.IPv4(10, 0, 0, 2).To4(), net.IPv4(10, 0, 0, 3).To4()
	for _, tc := range []struct {
		name   string
		routes []route
		want   net.IP
	}{
		{"none", nil, nil},
		{"link route only", []route{{DstLen: 24, Dst: net.IPv4(10, 0, 0, 0).To4(), OIF: 2}}, nil},
		{"default", []route{{OIF: 2, Gw: gw1}}, gw1},
		{"other link's default", []route{{OIF: 3, Gw: gw1}}, nil},
		{"lowest metric", []route{{OIF: 2, Gw: gw1, Priority: 100}, {OIF: 2, Gw: gw2, Priority: 10}}, gw2},
		{"multipath hop on the link", []route{{Hops: []hop{{Index: 3, Gw: gw1}, {Index: 2, Gw: gw3}}}}, gw3},
		{"default without gateway", []route{{OIF: 2}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultGateway(tc.routes, 2); !got.Equal(tc.want) {
				t.Errorf("defaultGateway = %v, want %v", got, tc.want)
			}
		})
	}
}
