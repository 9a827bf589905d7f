//go:build ignore

// gen writes shim.pb.go and shim_ttrpc.pb.go: containerd's task API v3
// (github.com/containerd/containerd/api/runtime/task/v3, shim.proto) as
// messages and a ttrpc service only. containerd's own package also holds the
// gRPC service, whose import of google.golang.org/grpc (HTTP/2, TLS, its
// resolvers and balancers, all initialised at start) doubled the shim's
// binary and memory. The messages are containerd's, field for field (the
// same wire format); they are registered under the protobuf package
// feather.osv.task.v3, so that a program may link both. The ttrpc service
// keeps its wire name, containerd.task.v3.Task.
//
// Run with `go generate ./shim-osv/taskapi` after a containerd API upgrade.
package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"log"
	"os"
	"regexp"
	"strings"
	"text/template"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

const (
	fromPackage = "containerd.task.v3"
	toPackage   = "feather.osv.task.v3"
	goPackage   = "github.com/feather-edge/feather/shim-osv/taskapi;taskapi"
	fileName    = "shim-osv/taskapi/shim.proto"
	// serviceName is the service's name on the wire, containerd's.
	serviceName = "containerd.task.v3.Task"
)

func main() {
	src := taskv3.File_runtime_task_v3_shim_proto
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{fileName}}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := 0; i < fd.Imports().Len(); i++ {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		if fd.Path() != src.Path() {
			req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
		}
	}
	add(src)
	fdp := protodesc.ToFileDescriptorProto(src)
	fdp.Name = proto.String(fileName)
	fdp.Package = proto.String(toPackage)
	fdp.Options.GoPackage = proto.String(goPackage)
	rename := func(s *string) {
		if s != nil && strings.HasPrefix(*s, "."+fromPackage+".") {
			*s = "." + toPackage + strings.TrimPrefix(*s, "."+fromPackage)
		}
	}
	var walk func(ms []*descriptorpb.DescriptorProto)
	walk = func(ms []*descriptorpb.DescriptorProto) {
		for _, m := range ms {
			for _, f := range m.Field {
				rename(f.TypeName)
			}
			walk(m.NestedType)
		}
	}
	walk(fdp.MessageType)
	for _, s := range fdp.Service {
		for _, m := range s.Method {
			rename(m.InputType)
			rename(m.OutputType)
		}
	}
	req.ProtoFile = append(req.ProtoFile, fdp)

	gen, err := protogen.Options{}.New(req)
	if err != nil {
		log.Fatal(err)
	}
	var file *protogen.File
	for _, f := range gen.Files {
		if f.Generate {
			file = f
			internal_gengo.GenerateFile(gen, f)
		}
	}
	resp := gen.Response()
	if resp.Error != nil {
		log.Fatal(*resp.Error)
	}
	if len(resp.File) != 1 {
		log.Fatalf("%d files generated, want 1", len(resp.File))
	}
	out, err := fixAcronyms([]byte(resp.File[0].GetContent()))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("shim.pb.go", out, 0o644); err != nil {
		log.Fatal(err)
	}
	if err := writeTTRPC(file); err != nil {
		log.Fatal(err)
	}
}

// acronym is what containerd's build (protobuild's go-fix-acronym) spells in
// capitals at the end of a Go name: ID, ExecID, GetID.
var acronym = regexp.MustCompile(`^(|[A-Z]\w*?)(Id|Io|Uuid|Os)$`)

// fixAcronyms renames the generated fields and getters as containerd's
// package names them, so that code written for it compiles against this one.
func fixAcronyms(src []byte) ([]byte, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "shim.pb.go", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok {
			if m := acronym.FindStringSubmatch(id.Name); m != nil {
				id.Name = m[1] + strings.ToUpper(m[2])
			}
		}
		return true
	})
	var b bytes.Buffer
	if err := format.Node(&b, fset, f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeTTRPC writes the ttrpc service and client, as protoc-gen-go-ttrpc
// does for unary methods (the task API has no streams).
func writeTTRPC(f *protogen.File) error {
	if len(f.Services) != 1 {
		return fmt.Errorf("%d services, want 1", len(f.Services))
	}
	type method struct{ Name, In, Out string }
	var ms []method
	typeName := func(m *protogen.Message) string {
		if m.GoIdent.GoImportPath == f.GoImportPath {
			return m.GoIdent.GoName
		}
		if m.GoIdent.GoImportPath != "google.golang.org/protobuf/types/known/emptypb" {
			panic("unexpected type " + m.GoIdent.String())
		}
		return "emptypb." + m.GoIdent.GoName
	}
	s := f.Services[0]
	for _, m := range s.Methods {
		if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
			return fmt.Errorf("method %s streams", m.GoName)
		}
		ms = append(ms, method{m.GoName, typeName(m.Input), typeName(m.Output)})
	}
	var b bytes.Buffer
	err := ttrpcTemplate.Execute(&b, struct {
		Service, Wire string
		Methods       []method
	}{s.GoName, serviceName, ms})
	if err != nil {
		return err
	}
	out, err := format.Source(b.Bytes())
	if err != nil {
		return err
	}
	return os.WriteFile("shim_ttrpc.pb.go", out, 0o644)
}

var ttrpcTemplate = template.Must(template.New("ttrpc").Parse(`// Code generated by gen.go from containerd's runtime/task/v3/shim.proto. DO NOT EDIT.

package taskapi

import (
	context "context"

	ttrpc "github.com/containerd/ttrpc"
	emptypb "google.golang.org/protobuf/types/known/emptypb"
)

// TTRPC{{.Service}}Service is the task API a shim serves.
type TTRPC{{.Service}}Service interface {
{{- range .Methods}}
	{{.Name}}(context.Context, *{{.In}}) (*{{.Out}}, error)
{{- end}}
}

// RegisterTTRPC{{.Service}}Service registers svc on srv as {{.Wire}}.
func RegisterTTRPC{{.Service}}Service(srv *ttrpc.Server, svc TTRPC{{.Service}}Service) {
	srv.RegisterService("{{.Wire}}", &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
{{- range .Methods}}
			"{{.Name}}": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
				var req {{.In}}
				if err := unmarshal(&req); err != nil {
					return nil, err
				}
				return svc.{{.Name}}(ctx, &req)
			},
{{- end}}
		},
	})
}

type ttrpc{{.Service}}Client struct {
	client *ttrpc.Client
}

// NewTTRPC{{.Service}}Client returns a client of the task API a shim serves
// on client's connection.
func NewTTRPC{{.Service}}Client(client *ttrpc.Client) TTRPC{{.Service}}Service {
	return &ttrpc{{.Service}}Client{client: client}
}
{{range .Methods}}
func (c *ttrpc{{$.Service}}Client) {{.Name}}(ctx context.Context, req *{{.In}}) (*{{.Out}}, error) {
	var resp {{.Out}}
	if err := c.client.Call(ctx, "{{$.Wire}}", "{{.Name}}", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
{{end}}`))
