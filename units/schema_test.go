package units

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"
)

// TestSchema_matchesParser holds service.schema.json and the parser to the same fields: a
// field only one of them knows is either undocumented or documented but refused.
func TestSchema_matchesParser(t *testing.T) {
	data, err := os.ReadFile("service.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("service.schema.json is not JSON: %v", err)
	}
	if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema is %v, want draft 2020-12", schema["$schema"])
	}
	defs := object(t, schema, "$defs")
	service := object(t, defs, "service")
	serviceProps := object(t, service, "properties")
	tests := []struct {
		where string
		props map[string]any
		typ   any
	}{
		{"top level", object(t, schema, "properties"), nativeFile{}},
		{"services.*", serviceProps, nativeService{}},
		{"services.*.health", object(t, object(t, serviceProps, "health"), "properties"), nativeHealth{}},
		{"services.*.rollout", object(t, object(t, serviceProps, "rollout"), "properties"), nativeRollout{}},
	}
	for _, tt := range tests {
		parser := sortedKeys(jsonFields(reflect.TypeOf(tt.typ)))
		documented := sortedKeys(tt.props)
		if !slices.Equal(parser, documented) {
			t.Errorf("%s: the parser accepts %q, the schema documents %q", tt.where, parser, documented)
		}
		for name, p := range tt.props {
			p := p.(map[string]any)
			if _, ok := p["description"]; !ok {
				if ref, _ := p["$ref"].(string); ref == "" || object(t, defs, ref[len("#/$defs/"):])["description"] == nil {
					t.Errorf("%s.%s has no description", tt.where, name)
				}
			}
		}
	}
	var enum []string
	for _, v := range object(t, object(t, serviceProps, "relax"), "items")["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	if !slices.Equal(enum, Protections()) {
		t.Errorf("relax: the schema lists %q, the generator %q", enum, Protections())
	}
	if d := object(t, serviceProps, "instances")["default"]; d != float64(DefaultInstances) {
		t.Errorf("instances: the schema's default is %v, the parser's %d", d, DefaultInstances)
	}
	if m := object(t, serviceProps, "instances")["maximum"]; m != float64(MaxInstances) {
		t.Errorf("instances: the schema's maximum is %v, the parser's %d", m, MaxInstances)
	}
}

func object(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("schema: %q is not an object", key)
	}
	return v
}
