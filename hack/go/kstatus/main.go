// Command kstatus prints the kstatus reading (sigs.k8s.io/cli-utils) of each object
// given as a JSON list on stdin: one {"status", "message"} per object, in order.
// The tests use it to check kiu's conditions against the library itself.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type reading struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	// utiljson keeps integers int64, as the API machinery reads them.
	var objects []map[string]interface{}
	input, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = utiljson.Unmarshal(input, &objects)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
		os.Exit(2)
	}
	readings := make([]reading, 0, len(objects))
	for _, object := range objects {
		result, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", err)
			os.Exit(1)
		}
		readings = append(readings, reading{Status: string(result.Status), Message: result.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(readings); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: writing stdout:", err)
		os.Exit(1)
	}
}
