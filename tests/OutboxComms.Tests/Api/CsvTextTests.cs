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
}
