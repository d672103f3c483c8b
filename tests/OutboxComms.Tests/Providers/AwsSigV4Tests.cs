using System.Net.Http.Headers;
using System.Text;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Tests.Providers;

/// <summary>
/// The signer against AWS's published Signature Version 4 test suite ("aws-sig-v4-test-suite"):
/// credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830T123600Z, us-east-1,
/// service "service"; for each case the expected canonical request, string to sign and Authorization.
/// </summary>
public sealed class AwsSigV4Tests
{
    private const string AccessKeyId = "AKIDEXAMPLE";
    private const string Secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    private const string Region = "us-east-1";
    private const string Service = "service";
    private const string Host = "example.amazonaws.com";
    private const string AmzDate = "20150830T123600Z";
    private const string Scope = "20150830/us-east-1/service/aws4_request";
    private const string EmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    private static readonly DateTimeOffset SigningTime = new(2015, 8, 30, 12, 36, 0, TimeSpan.Zero);

    /// <summary>One published case. Headers are "Name:value" lines in request order, besides Host and X-Amz-Date.</summary>
    public sealed record Vector(string Name, string Method, string Path, string Query, string[] Headers, string Body, string CanonicalRequest, string StringToSignHash, string SignedHeaders, string Signature)
    {
        public override string ToString() => Name;
    }

    public static TheoryData<Vector> Suite =>
    [
        new Vector("get-vanilla", "GET", "/", "", [], "",
            $"GET\n/\n\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        new Vector("get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", [], "",
            $"GET\n/\nParam1=value1&Param2=value2\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0", "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        new Vector("get-vanilla-query-order-value", "GET", "/", "Param1=value2&Param1=value1", [], "",
            $"GET\n/\nParam1=value1&Param1=value2\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606", "host;x-amz-date",
            "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
        new Vector("get-vanilla-query-unreserved", "GET", "/", $"{Unreserved}={Unreserved}", [], "",
            $"GET\n/\n{Unreserved}={Unreserved}\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177", "host;x-amz-date",
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
        new Vector("get-vanilla-utf8-query", "GET", "/", "\u1234=bar", [], "",
            $"GET\n/\n%E1%88%B4=bar\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073", "host;x-amz-date",
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        new Vector("get-unreserved", "GET", $"/{Unreserved}", "", [], "",
            $"GET\n/{Unreserved}\n\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9", "host;x-amz-date",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        new Vector("get-utf8", "GET", "/\u1234", "", [], "",
            $"GET\n/%E1%88%B4\n\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102", "host;x-amz-date",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        new Vector("get-header-key-duplicate", "GET", "/", "", ["My-Header1:value2", "My-Header1:value2", "My-Header1:value1"], "",
            $"GET\n/\n\nhost:{Host}\nmy-header1:value2,value2,value1\nx-amz-date:{AmzDate}\n\nhost;my-header1;x-amz-date\n{EmptyHash}",
            "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c", "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
        new Vector("get-header-value-order", "GET", "/", "", ["My-Header1:value4", "My-Header1:value1", "My-Header1:value3", "My-Header1:value2"], "",
            $"GET\n/\n\nhost:{Host}\nmy-header1:value4,value1,value3,value2\nx-amz-date:{AmzDate}\n\nhost;my-header1;x-amz-date\n{EmptyHash}",
            "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86", "host;my-header1;x-amz-date",
            "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
        new Vector("get-header-value-trim", "GET", "/", "", ["My-Header1: value1", "My-Header2: \"a   b   c\""], "",
            $"GET\n/\n\nhost:{Host}\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:{AmzDate}\n\nhost;my-header1;my-header2;x-amz-date\n{EmptyHash}",
            "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7", "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        new Vector("post-vanilla", "POST", "/", "", [], "",
            $"POST\n/\n\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87", "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        new Vector("post-vanilla-query", "POST", "/", "Param1=value1", [], "",
            $"POST\n/\nParam1=value1\nhost:{Host}\nx-amz-date:{AmzDate}\n\nhost;x-amz-date\n{EmptyHash}",
            "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd", "host;x-amz-date",
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
        new Vector("post-header-value-case", "POST", "/", "", ["My-Header1:VALUE1"], "",
            $"POST\n/\n\nhost:{Host}\nmy-header1:VALUE1\nx-amz-date:{AmzDate}\n\nhost;my-header1;x-amz-date\n{EmptyHash}",
            "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93", "host;my-header1;x-amz-date",
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
        new Vector("post-x-www-form-urlencoded", "POST", "/", "", ["Content-Type:application/x-www-form-urlencoded"], "Param1=value1",
            $"POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:{Host}\nx-amz-date:{AmzDate}\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281", "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ];

    private const string Unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    [Theory]
    [MemberData(nameof(Suite))]
    public void Each_case_of_the_published_suite_yields_its_canonical_request_string_to_sign_and_authorization(Vector vector)
    {
        List<KeyValuePair<string, string>> headers = [new("Host", Host), .. vector.Headers.Select(Parse), new("X-Amz-Date", AmzDate)];

        var signature = AwsSigV4.Compute(vector.Method, vector.Path, vector.Query, headers, Encoding.UTF8.GetBytes(vector.Body),
            AccessKeyId, Secret, Region, Service, SigningTime);

        Assert.Equal(vector.CanonicalRequest, signature.CanonicalRequest);
        Assert.Equal($"AWS4-HMAC-SHA256\n{AmzDate}\n{Scope}\n{vector.StringToSignHash}", signature.StringToSign);
        Assert.Equal($"AWS4-HMAC-SHA256 Credential={AccessKeyId}/{Scope}, SignedHeaders={vector.SignedHeaders}, Signature={vector.Signature}", signature.Authorization);
    }

    [Fact]
    public void Signing_a_request_message_sets_host_date_and_the_suites_authorization()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"https://{Host}/");

        AwsSigV4.Sign(request, [], AccessKeyId, Secret, Region, Service, SigningTime);

        Assert.Equal(Host, request.Headers.Host);
        Assert.Equal(AmzDate, Assert.Single(request.Headers.GetValues("X-Amz-Date")));
        Assert.Equal(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            Assert.Single(request.Headers.GetValues("Authorization")));
    }

    [Fact]
    public void Signing_a_request_with_content_signs_its_content_type_and_body()
    {
        var body = "Param1=value1"u8.ToArray();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"https://{Host}/") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");

        AwsSigV4.Sign(request, body, AccessKeyId, Secret, Region, Service, SigningTime);

        Assert.EndsWith("SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
            Assert.Single(request.Headers.GetValues("Authorization")), StringComparison.Ordinal);
    }

    [Fact]
    public void A_non_default_port_is_part_of_the_signed_host()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://localhost:8443/v2/email/account");

        AwsSigV4.Sign(request, [], AccessKeyId, Secret, Region, "ses", SigningTime);

        Assert.Equal("localhost:8443", request.Headers.Host);
    }

    private static KeyValuePair<string, string> Parse(string line)
    {
        var colon = line.IndexOf(':', StringComparison.Ordinal);
        return new(line[..colon], line[(colon + 1)..]);
    }
}
