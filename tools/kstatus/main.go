// Command kstatus reads one Kubernetes object (JSON or YAML) on stdin and prints, as JSON, the
// status that sigs.k8s.io/cli-utils' kstatus computes for it: what Flux, Argo CD and kpt wait on.
//
//	kubectl get ne demo -o json | kstatus
//	{"status":"Current","message":"Resource is current"}
//
// `kstatus --version` prints the cli-utils version it was built with.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const library = "sigs.k8s.io/cli-utils"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("kstatus", libraryVersion())
		return
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	data, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("stdin is not JSON or YAML: %w", err)
	}
	// The unstructured decoder keeps integers as int64, as kstatus' accessors expect.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("stdin is not one Kubernetes object: %w", err)
	}
	result, err := status.Compute(obj)
	if err != nil {
		return fmt.Errorf("computing the status: %w", err)
	}
	return json.NewEncoder(out).Encode(map[string]string{
		"status":  result.Status.String(),
		"message": result.Message,
	})
}

func libraryVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == library {
				return library + " " + dep.Version
			}
		}
	}
	return library + " (version unknown)"
}
