package feedback

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	fbtoken "github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// These tests keep openapi.json, which is written by hand, in step with the
// code: every route of Handler, every field of the types the API reads and
// writes, and the bounds in feedback.go and pkg/token. That the server
// answers as the document says is checked against a running proxy by
// schemathesis (e2e/openapi_test.go).

type jsonObject = map[string]any

func loadOpenAPI(t *testing.T) jsonObject {
	t.Helper()
	var doc jsonObject
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// pointer returns what the JSON pointer ref ("#/components/schemas/Status")
// names in doc.
func pointer(t *testing.T, doc jsonObject, ref string) any {
	t.Helper()
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		t.Fatalf("$ref %q: only references into this document are used", ref)
	}
	var v any = doc
	for _, part := range strings.Split(path, "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		switch x := v.(type) {
		case jsonObject:
			var ok bool
			if v, ok = x[part]; !ok {
				t.Fatalf("%s: no %q", ref, part)
			}
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				t.Fatalf("%s: no item %q in an array of %d", ref, part, len(x))
			}
			v = x[i]
		default:
			t.Fatalf("%s: %q is not in an object or array", ref, part)
		}
	}
	return v
}

func object(t *testing.T, v any, what string) jsonObject {
	t.Helper()
	obj, ok := v.(jsonObject)
	if !ok {
		t.Fatalf("%s: expected a JSON object, got %T", what, v)
	}
	return obj
}

// schemaProperties returns the properties a schema declares, through $ref
// and allOf, and the names it requires.
func schemaProperties(t *testing.T, doc jsonObject, schema jsonObject) (props map[string]jsonObject, required []string) {
	t.Helper()
	props = map[string]jsonObject{}
	var walk func(s jsonObject)
	walk = func(s jsonObject) {
		if ref, ok := s["$ref"].(string); ok {
			walk(object(t, pointer(t, doc, ref), ref))
		}
		for name, p := range object(t, orEmpty(s["properties"]), "properties") {
			props[name] = object(t, p, "property "+name)
		}
		for _, r := range asSlice(s["required"]) {
			required = append(required, r.(string))
		}
		for _, sub := range asSlice(s["allOf"]) {
			walk(object(t, sub, "allOf"))
		}
	}
	walk(schema)
	slices.Sort(required)
	return props, slices.Compact(required)
}

func orEmpty(v any) any {
	if v == nil {
		return jsonObject{}
	}
	return v
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// jsonFields returns the JSON names of t's fields as encoding/json sees
// them, embedded structs flattened, each with whether it is omitempty.
func jsonFields(t reflect.Type) map[string]bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := map[string]bool{}
	for f := range t.Fields() {
		tag, hasTag := f.Tag.Lookup("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		if f.Anonymous && !hasTag {
			maps.Copy(fields, jsonFields(f.Type))
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = slices.Contains(strings.Split(opts, ","), "omitempty")
	}
	return fields
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// wireTypes are the types the API reads or writes, with the schema that
// documents each. A response type's fields that are always sent must be
// required by its schema, and the others must not; a request's schema
// requires what the server requires.
var wireTypes = []struct {
	schema   string
	typ      reflect.Type
	response bool
}{
	{"#/components/schemas/Feedback", reflect.TypeFor[item](), false},
	{"#/components/schemas/Status", reflect.TypeFor[Status](), true},
	{"#/components/schemas/BatchAnswer", reflect.TypeFor[batchAnswer](), true},
	{"#/components/schemas/FieldError", reflect.TypeFor[FieldError](), true},
	{"#/components/schemas/Error", reflect.TypeFor[apiError](), true},
	{"#/components/schemas/Error/properties/error", reflect.TypeFor[errorBody](), true},
	{"#/components/schemas/LookupAnswer", reflect.TypeFor[ResponseState](), true},
	{"#/components/schemas/Span", reflect.TypeFor[SpanRef](), true},
	{"#/components/schemas/MintRequest", reflect.TypeFor[mintRequest](), false},
	{"#/components/schemas/MintAnswer", reflect.TypeFor[mintAnswer](), true},
}

// TestOpenAPIFields checks both ways that the document names every field of
// the API's types: a field added to a type and not to the document, or
// renamed in one of them, fails here.
func TestOpenAPIFields(t *testing.T) {
	doc := loadOpenAPI(t)
	for _, w := range wireTypes {
		t.Run(w.typ.Name(), func(t *testing.T) {
			props, required := schemaProperties(t, doc, object(t, pointer(t, doc, w.schema), w.schema))
			fields := jsonFields(w.typ)
			if got, want := sortedKeys(props), sortedKeys(fields); !slices.Equal(got, want) {
				t.Errorf("%s has the properties\n\t%q\nbut %s has the JSON fields\n\t%q", w.schema, got, w.typ, want)
			}
			for _, name := range required {
				if _, ok := fields[name]; !ok {
					t.Errorf("%s requires %q, which %s does not have", w.schema, name, w.typ)
				}
			}
			if !w.response {
				return
			}
			var always []string
			for name, omitempty := range fields {
				if !omitempty {
					always = append(always, name)
				}
			}
			slices.Sort(always)
			if !slices.Equal(required, always) {
				t.Errorf("%s requires\n\t%q\nbut %s always sends (no omitempty)\n\t%q", w.schema, required, w.typ, always)
			}
		})
	}
	// A batch item is its index and either its Status or its error
	// (itemStatus): the two schemas, together, have its fields.
	t.Run("itemStatus", func(t *testing.T) {
		accepted, reqA := schemaProperties(t, doc, object(t, pointer(t, doc, "#/components/schemas/BatchItemAccepted"), "BatchItemAccepted"))
		rejected, reqR := schemaProperties(t, doc, object(t, pointer(t, doc, "#/components/schemas/BatchItemRejected"), "BatchItemRejected"))
		union := maps.Clone(accepted)
		maps.Copy(union, rejected)
		fields := jsonFields(reflect.TypeFor[itemStatus]())
		if got, want := sortedKeys(union), sortedKeys(fields); !slices.Equal(got, want) {
			t.Errorf("BatchItemAccepted and BatchItemRejected have the properties\n\t%q\nbut itemStatus has the JSON fields\n\t%q", got, want)
		}
		status := jsonFields(reflect.TypeFor[Status]())
		wantA := []string{"index"}
		for name, omitempty := range status {
			if !omitempty {
				wantA = append(wantA, name)
			}
		}
		slices.Sort(wantA)
		if !slices.Equal(reqA, wantA) {
			t.Errorf("BatchItemAccepted requires %q, want %q", reqA, wantA)
		}
		if want := []string{"error", "index"}; !slices.Equal(reqR, want) {
			t.Errorf("BatchItemRejected requires %q, want %q", reqR, want)
		}
	})
}

// TestOpenAPIWireTypesListed fails when a type of this package with JSON
// tags is in none of wireTypes: a new type on the wire needs a schema.
func TestOpenAPIWireTypesListed(t *testing.T) {
	listed := map[string]bool{}
	types := []reflect.Type{reflect.TypeFor[itemStatus]()}
	for _, w := range wireTypes {
		types = append(types, w.typ)
	}
	for _, typ := range types {
		listed[typ.Name()] = true
		// An embedded struct's fields are checked as its embedder's.
		for f := range typ.Fields() {
			if et := f.Type; f.Anonymous {
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				listed[et.Name()] = true
			}
		}
	}
	for name := range packageStructs(t) {
		if !listed[name] {
			t.Errorf("type %s has JSON tags but no schema in openapi.json: add it to the document and to wireTypes", name)
		}
	}
}

// packageStructs returns the struct types of the package's non-test files
// that have a field with a json tag.
func packageStructs(t *testing.T) map[string]bool {
	t.Helper()
	structs := map[string]bool{}
	for _, f := range parsePackage(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, field := range st.Fields.List {
				if field.Tag != nil && strings.Contains(field.Tag.Value, `json:"`) {
					structs[ts.Name.Name] = true
				}
			}
			return true
		})
	}
	return structs
}

func parsePackage(t *testing.T) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// handlerRoutes returns the patterns (*Service).Handler registers, as
// written in its source: "POST /feedback", ...
func handlerRoutes(t *testing.T) []string {
	t.Helper()
	var routes []string
	found := false
	for _, f := range parsePackage(t) {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "Handler" || fn.Recv == nil {
				continue
			}
			found = true
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok {
					t.Fatalf("Handler registers a route whose pattern is not a string literal; this test reads the literals")
				}
				p, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				routes = append(routes, p)
				return true
			})
		}
	}
	if !found || len(routes) == 0 {
		t.Fatal("found no method Handler registering routes in this package")
	}
	return routes
}

// operations are the document's operations, "METHOD /path".
func operations(t *testing.T, doc jsonObject) []string {
	t.Helper()
	var ops []string
	for path, item := range object(t, doc["paths"], "paths") {
		for method := range object(t, item, path) {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

// TestOpenAPIRoutes checks that the document has an operation for every
// route of Handler, and no operation the feedback listener does not serve.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := operations(t, doc)
	routes := handlerRoutes(t)
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("Handler serves %q, which openapi.json does not document", r)
		}
	}
	// What the proxy serves on the same listener, beside Handler: the
	// widget (pkg/widget) and the CORS preflights (pkg/proxy).
	beside := map[string]bool{
		"GET /widget.js":                  true,
		"OPTIONS /feedback":               true,
		"OPTIONS /feedback/{response_id}": true,
	}
	for _, op := range ops {
		if !slices.Contains(routes, op) && !beside[op] {
			t.Errorf("openapi.json documents %q, which neither Handler nor the proxy beside it serves", op)
		}
	}
	// Every operation says how it answers a client past the rate limit
	// per address, which stands in front of every route.
	for path, item := range object(t, doc["paths"], "paths") {
		for method, op := range object(t, item, path) {
			responses := object(t, object(t, op, method+" "+path)["responses"], method+" "+path+" responses")
			if _, ok := responses["429"]; !ok {
				t.Errorf("%s %s does not document 429, which the rate limit per address answers on every route", strings.ToUpper(method), path)
			}
		}
	}
}

// TestOpenAPIDocument checks the document's frame: OpenAPI 3.1, every
// $ref resolves, every operation has an id.
func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	var walk func(v any, at string)
	refs := 0
	walk = func(v any, at string) {
		switch v := v.(type) {
		case jsonObject:
			if ref, ok := v["$ref"].(string); ok {
				pointer(t, doc, ref)
				refs++
			}
			for k, x := range v {
				walk(x, at+"/"+k)
			}
		case []any:
			for i, x := range v {
				walk(x, fmt.Sprintf("%s/%d", at, i))
			}
		}
	}
	walk(doc, "#")
	if refs == 0 {
		t.Error("no $ref found: the walk is broken")
	}
	ids := map[string]bool{}
	for path, item := range object(t, doc["paths"], "paths") {
		for method, op := range object(t, item, path) {
			id, _ := object(t, op, path)["operationId"].(string)
			if id == "" || ids[id] {
				t.Errorf("%s %s: operationId %q is missing or not unique", method, path, id)
			}
			ids[id] = true
		}
	}
}

// TestOpenAPIBounds checks the bounds the document states against the
// constants the server enforces.
func TestOpenAPIBounds(t *testing.T) {
	doc := loadOpenAPI(t)
	num := func(ref, key string) float64 {
		t.Helper()
		v, ok := object(t, pointer(t, doc, ref), ref)[key].(float64)
		if !ok {
			t.Fatalf("%s has no numeric %s", ref, key)
		}
		return v
	}
	const fb = "#/components/schemas/Feedback/properties/"
	const mint = "#/components/schemas/MintRequest/properties/"
	for _, c := range []struct {
		ref, key string
		want     float64
	}{
		{fb + "response_id", "maxLength", MaxResponseIDLen},
		{fb + "name", "maxLength", MaxNameLen},
		{fb + "label", "maxLength", MaxLabelLen},
		{fb + "identifier", "maxLength", MaxIdentifierLen},
		{fb + "explanation", "maxLength", MaxExplanationLen},
		{fb + "comment", "maxLength", MaxCommentLen},
		{"#/paths/~1feedback~1{response_id}/get/parameters/0/schema", "maxLength", MaxResponseIDLen},
		{mint + "response_id", "maxLength", fbtoken.MaxResponseIDLen},
		{mint + "identifier", "maxLength", fbtoken.MaxIdentifierLen},
		{mint + "names", "maxItems", fbtoken.MaxNames},
		{mint + "names/items", "maxLength", fbtoken.MaxNameLen},
		{mint + "ttl/oneOf/1", "minimum", 1},
		{mint + "ttl/oneOf/1", "maximum", fbtoken.MaxTTL.Seconds()},
		{"#/components/schemas/MintAnswer/properties/token", "maxLength", fbtoken.MaxLen},
	} {
		if got := num(c.ref, c.key); got != c.want {
			t.Errorf("%s %s = %v, the server's bound is %v", c.ref, c.key, got, c.want)
		}
	}
	// Bounds JSON Schema cannot state are in the descriptions.
	for _, c := range []struct {
		ref  string
		want string
	}{
		{"#/paths/~1feedback/post", strconv.Itoa(MaxBodyBytes) + " bytes"},
		{fb + "metadata", strconv.Itoa(MaxMetadataBytes) + " bytes"},
		{mint + "names", strconv.Itoa(fbtoken.MaxLen) + " bytes"},
		{"#/paths/~1feedback~1tokens/post", "64 KiB"},
	} {
		if d, _ := object(t, pointer(t, doc, c.ref), c.ref)["description"].(string); !strings.Contains(d, c.want) {
			t.Errorf("the description of %s does not say %q:\n%s", c.ref, c.want, d)
		}
	}
	enum := func(ref string) []string {
		t.Helper()
		var out []string
		for _, v := range asSlice(object(t, pointer(t, doc, ref), ref)["enum"]) {
			if s, ok := v.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		slices.Sort(out)
		return out
	}
	targets := []string{string(TargetSession), string(TargetSpan), string(TargetTrace)}
	states := []string{string(Annotated), string(Expired), string(Failed), string(Pending), string(Superseded)}
	slices.Sort(states)
	for _, c := range []struct {
		ref  string
		want []string
	}{
		{fb + "target", targets},
		{"#/components/schemas/StatusFields/properties/target", targets},
		{"#/components/schemas/StatusFields/properties/state", states},
		{fb + "annotator_kind", []string{"CODE", DefaultAnnotatorKind, "LLM"}},
		{fb + "thumbs", []string{"down", "up"}},
	} {
		if got := enum(c.ref); !slices.Equal(got, c.want) {
			t.Errorf("%s enum = %q, want %q", c.ref, got, c.want)
		}
	}
}

// TestOpenAPIHandler checks how GET /openapi.json serves the document.
func TestOpenAPIHandler(t *testing.T) {
	h := openAPIHandler()
	get := func(method string, header http.Header) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/openapi.json", nil)
		maps.Copy(r.Header, header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := get(http.MethodGet, nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || w.Body.String() != string(openAPIDocument) {
		t.Fatalf("GET: %d %q, %d bytes; want 200 application/json and the document", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
	etag := w.Header().Get("ETag")
	if etag == "" || etag != openAPIETag {
		t.Fatalf("ETag %q, want %q", etag, openAPIETag)
	}
	if w := get(http.MethodGet, http.Header{"If-None-Match": {etag}}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("GET with If-None-Match: its ETag: %d with %d bytes, want 304 and none", w.Code, w.Body.Len())
	}
	if w := get(http.MethodGet, http.Header{"If-None-Match": {`"older"`}}); w.Code != http.StatusOK {
		t.Errorf("GET with If-None-Match: another ETag: %d, want 200", w.Code)
	}
	if w := get(http.MethodHead, nil); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes, want 200 and none", w.Code, w.Body.Len())
	}
}

// TestOpenAPIPatterns checks the document's patterns against the functions
// the server decides with: a comment is blank when strings.TrimSpace
// leaves nothing (unicode.IsSpace), a ttl string is what time.ParseDuration
// parses. The patterns use nothing on which RE2 and ECMA-262 differ.
func TestOpenAPIPatterns(t *testing.T) {
	doc := loadOpenAPI(t)
	pattern := func(ref string) *regexp.Regexp {
		t.Helper()
		p, _ := object(t, pointer(t, doc, ref), ref)["pattern"].(string)
		re, err := regexp.Compile(p)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		return re
	}
	comment := pattern("#/components/schemas/Feedback/properties/comment")
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		if got, blank := comment.MatchString(string(r)), unicode.IsSpace(r); got == blank {
			t.Errorf("comment pattern: %U matches: %v, but unicode.IsSpace says %v", r, got, blank)
		}
	}
	ttl := pattern("#/components/schemas/MintRequest/properties/ttl/oneOf/0")
	for _, s := range []string{
		"0", "00", "0s", "1h", "1h30m", "1.5h", ".5s", "5.s", ".s", "-1s", "+1s", "1ns", "1us", "1\u00b5s", "1\u03bcs",
		"1ms", "", "1", "h", "1hh", "1 h", " 1h", "1e3s", "1d", "1H", "1h-1m",
	} {
		_, err := time.ParseDuration(s)
		if got, parses := ttl.MatchString(s), err == nil; got != parses {
			t.Errorf("ttl pattern: %q matches: %v, but time.ParseDuration: %v", s, got, err)
		}
	}
}
