// Command apicount prints, for each Go package below a directory (non-test
// files, commands excluded), the number of exported top-level identifiers
// (const, var, type, func) and of exported methods on exported types: what
// `go doc -all` lists. Issue 10 measures the public API with it:
//
//	go run ./scripts/apicount .
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	counts := map[string][2]int{}
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if info.IsDir() && (info.Name() == "testdata" || info.Name() == "node_modules" || strings.HasPrefix(info.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if info.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil || f.Name.Name == "main" {
			return nil
		}
		dir, _ := filepath.Rel(root, filepath.Dir(p))
		c := counts[dir]
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv != nil {
					t := d.Recv.List[0].Type
					if s, ok := t.(*ast.StarExpr); ok {
						t = s.X
					}
					if ix, ok := t.(*ast.IndexExpr); ok {
						t = ix.X
					}
					if id, ok := t.(*ast.Ident); !ok || !id.IsExported() {
						continue
					}
					c[1]++
					continue
				}
				c[0]++
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							c[0]++
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								c[0]++
							}
						}
					}
				}
			}
		}
		counts[dir] = c
		return nil
	})
	var dirs []string
	for d := range counts {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		c := counts[d]
		fmt.Printf("%-28s %4d top-level + %3d methods = %4d\n", d, c[0], c[1], c[0]+c[1])
	}
}
