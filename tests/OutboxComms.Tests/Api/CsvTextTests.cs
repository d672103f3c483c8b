using OutboxComms.Api.Common;

namespace OutboxComms.Tests.Api;

public sealed class CsvTextTests
{
    [Fact]
    public void Fields_in_quotes_keep_commas_line_breaks_and_doubled_quotes_and_each_record_knows_its_line()
    {
        var text = "externalId,name,email\r\nCL-1,\"Iyer & Sons, Chennai\",a@iyer.example\r\n\r\nCL-2,\"The \"\"Rao\"\" group\nof companies\",\nCL-3,मेहता,\n";

        var records = CsvText.Parse(text);

        Assert.Equal([1, 2, 4, 6], records.Select(r => r.Line));
        Assert.Equal(["CL-1", "Iyer & Sons, Chennai", "a@iyer.example"], records[1].Fields);
        Assert.Equal(["CL-2", "The \"Rao\" group\nof companies", ""], records[2].Fields);
        Assert.Equal(["CL-3", "मेहता", ""], records[3].Fields);
    }

    [Fact]
    public void A_quote_left_open_names_the_line_its_record_starts_on()
    {
        var error = Assert.Throws<FormatException>(() => CsvText.Parse("externalId,name\nCL-1,ok\nCL-2,\"never closed\nCL-3,x\n"));

        Assert.Equal("line 3: a quoted field is not closed.", error.Message);
    }

    [Fact]
    public void Cleared_rows_are_skipped_a_lone_cr_inside_quotes_counts_as_a_line_and_the_size_is_bounded()
    {
        var records = CsvText.Parse("a,b\n,,\n  , \n\"x\ry\",z\nlast,one");

        Assert.Equal([1, 4, 6], records.Select(r => r.Line));
        Assert.Equal(["x\ry", "z"], records[1].Fields);

        Assert.Equal(3, CsvText.Parse("h\n1\n2\n3\n4\n5\n", maxRecords: 2).Count);   // enough to tell there are more than 2
        Assert.Equal("line 2 has more than 4 cells.", Assert.Throws<FormatException>(() => CsvText.Parse("a,b\n1,2,3,4,5\n", maxFields: 4)).Message);
    }
}
