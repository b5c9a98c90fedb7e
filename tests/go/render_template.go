// Renders an Ollama Modelfile TEMPLATE with Go's own text/template engine, the engine Ollama uses.
//
// Reads JSON {"template", "system", "prompt", "response", "cut"} on stdin and prints the rendered text.
// With "cut", the {{ .Response }} action and everything after it are dropped before rendering: that is how Ollama builds
// the prompt for a generation from a template written over .System/.Prompt/.Response.
package main

import (
	"encoding/json"
	"os"
	"text/template"
	"text/template/parse"
)

type input struct {
	Template string `json:"template"`
	System   string `json:"system"`
	Prompt   string `json:"prompt"`
	Response string `json:"response"`
	Cut      bool   `json:"cut"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("t").Parse(in.Template))
	if in.Cut {
		nodes := tmpl.Tree.Root.Nodes
		for i, n := range nodes {
			if a, ok := n.(*parse.ActionNode); ok && a.String() == "{{.Response}}" {
				tmpl.Tree.Root.Nodes = nodes[:i]
				break
			}
		}
	}
	data := map[string]string{"System": in.System, "Prompt": in.Prompt, "Response": in.Response}
	if err := tmpl.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
