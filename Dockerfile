# One image, two entry points: `api` (default) and `worker` (plus the worker's ops verbs).
#   docker build -t outboxcomms .
#   docker run -e ConnectionStrings__Outbox=... outboxcomms api
#   docker run -e ConnectionStrings__Outbox=... outboxcomms worker
#   docker run -e ConnectionStrings__Outbox=... outboxcomms migrate

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props .editorconfig OutboxComms.sln ./
COPY migrations/ migrations/
COPY src/ src/
RUN dotnet publish src/OutboxComms.Api/OutboxComms.Api.csproj -c Release -o /app/api \
 && dotnet publish src/OutboxComms.Worker/OutboxComms.Worker.csproj -c Release -o /app/worker

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app/api ./api
COPY --from=build /app/worker ./worker
COPY ops/docker-entrypoint.sh ./entrypoint.sh
COPY ops/healthcheck.sh ./healthcheck.sh
ENV ASPNETCORE_HTTP_PORTS=8080 \
    DOTNET_gcServer=0
EXPOSE 8080
# The .NET images ship an unprivileged `app` user (uid 1654).
USER app
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["api"]
