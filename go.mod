module github.com/embedbench/embedbench

go 1.26
