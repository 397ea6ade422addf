package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// passageColumn picks the column holding passages in the HF datasets' layouts:
//   - microsoft/ms_marco: passages.passage_text, a list of strings per query row;
//   - BeIR/msmarco corpus: _id, title, text;
//   - sentence-transformers/msmarco corpus: passage_id, passage.
//
// Reading the leaf column's values directly yields every list element as one passage,
// whatever list encoding (list.element, list.item, bag.array) the writer chose.
func passageColumn(schema *parquet.Schema) (int, error) {
	columns := schema.Columns()
	for i, path := range columns {
		if len(path) >= 2 && path[0] == "passages" && slices.Contains(path[1:], "passage_text") {
			return i, nil
		}
	}
	for _, name := range []string{"text", "passage"} {
		for i, path := range columns {
			if len(path) == 1 && path[0] == name {
				return i, nil
			}
		}
	}
	names := make([]string, len(columns))
	for i, path := range columns {
		names[i] = strings.Join(path, ".")
	}
	return 0, fmt.Errorf("no passage column (want passages.passage_text as in microsoft/ms_marco, or text as in BeIR/msmarco); columns: %s", strings.Join(names, ", "))
}

func eachInParquet(ctx context.Context, f *os.File, path string, fn func(string) error) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("%s: not a readable parquet file: %w", path, err)
	}
	col, err := passageColumn(pf.Schema())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	values := make([]parquet.Value, 1024)
	for g, rowGroup := range pf.RowGroups() {
		if err := eachValue(ctx, rowGroup.ColumnChunks()[col], values, fn); err != nil {
			return fmt.Errorf("%s: row group %d: %w", path, g, err)
		}
	}
	return nil
}

func eachValue(ctx context.Context, chunk parquet.ColumnChunk, buf []parquet.Value, fn func(string) error) error {
	if kind := chunk.Type().Kind(); kind != parquet.ByteArray {
		return fmt.Errorf("passage column holds %s, want strings", kind)
	}
	pages := chunk.Pages()
	defer pages.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = eachPageValue(page, buf, fn)
		parquet.Release(page)
		if err != nil {
			return err
		}
	}
}

func eachPageValue(page parquet.Page, buf []parquet.Value, fn func(string) error) error {
	reader := page.Values()
	for {
		n, err := reader.ReadValues(buf)
		for _, v := range buf[:n] {
			if v.IsNull() { // an empty or missing list
				continue
			}
			if err := fn(string(v.ByteArray())); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
