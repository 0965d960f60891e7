module github.com/logferry/logferry

go 1.26
