module ftvm

go 1.26.8
