using YamlDotNet.RepresentationModel;

namespace OutboxComms.Tests.Foundation;

public sealed class DeploymentFileTests
{
    [Fact]
    public void Compose_file_is_valid_yaml_with_postgres_api_worker_and_a_mail_sink()
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(RepositoryRoot(), "compose.yaml")))
        {
            yaml.Load(reader);
        }

        var root = (YamlMappingNode)yaml.Documents[0].RootNode;
        var services = (YamlMappingNode)root.Children[new YamlScalarNode("services")];
        var names = services.Children.Keys.Select(k => ((YamlScalarNode)k).Value).ToHashSet();
        Assert.Equal(new HashSet<string?> { "postgres", "api", "worker", "mailsink" }, names);

        var api = (YamlMappingNode)services.Children[new YamlScalarNode("api")];
        var environment = api.Children[new YamlScalarNode("environment")].ToString();
        Assert.Contains("ConnectionStrings__Outbox", environment, StringComparison.Ordinal);
    }

    [Fact]
    public void Dockerfile_is_multi_stage_and_runs_as_a_non_root_user()
    {
        var lines = File.ReadAllLines(Path.Combine(RepositoryRoot(), "Dockerfile"));
        Assert.True(lines.Count(l => l.StartsWith("FROM ", StringComparison.Ordinal)) >= 2);
        var user = lines.Last(l => l.StartsWith("USER ", StringComparison.Ordinal));
        Assert.DoesNotContain("root", user, StringComparison.Ordinal);
    }

    internal static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "OutboxComms.sln")))
        {
            directory = directory.Parent;
        }
        return directory?.FullName ?? throw new InvalidOperationException("OutboxComms.sln not found above the test binaries.");
    }
}
