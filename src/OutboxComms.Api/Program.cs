using OutboxComms.Api;

// appsettings.json sits beside the assembly: found from any working directory (ops/run.sh runs from
// the repository, the container from /app), not only from the project's.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddApiServices();

var app = builder.Build();
app.MapApi();
app.Run();

/// <summary>Entry point, visible to WebApplicationFactory in the tests.</summary>
public partial class Program;
